// Ctrl-C and SIGTERM while a command runs: the work is aborted cleanly (everything so far is saved) or the command stops.

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** Aborts `signal` on the first Ctrl-C or SIGTERM, with `reason`; `stop()` stops listening. */
export function abortOnInterrupt(reason?: () => unknown): { signal: AbortSignal; stop(): void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort(reason?.());
  for (const name of SIGNALS) process.once(name, onSignal);
  return {
    signal: controller.signal,
    stop: () => {
      for (const name of SIGNALS) process.off(name, onSignal);
    },
  };
}

/** Resolves on the first Ctrl-C or SIGTERM: for a command that serves until it is told to stop. */
export function untilInterrupted(): Promise<void> {
  return new Promise((resolveStop) => {
    const onSignal = () => {
      for (const name of SIGNALS) process.off(name, onSignal);
      resolveStop();
    };
    for (const name of SIGNALS) process.once(name, onSignal);
  });
}
