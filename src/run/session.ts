// One agent session: build the dependencies, open the checkpointer, compile the agent; close both however the work ends.
import { createAgent, type LoupeAgent } from "../../graphs/agent.js";
import type { LoupeConfig, LoupeSecrets } from "../core/config.js";
import { openCheckpointer } from "../runtime/checkpointer.js";
import { createDeps, type RuntimeDeps } from "../runtime/deps.js";

export interface AgentSession {
  agent: LoupeAgent;
  deps: RuntimeDeps;
  /** Where the checkpoints are kept (a file, or the redacted database URL), for messages. */
  where: string;
}

/**
 * Runs `work` with an agent on the configured checkpointer (SQLite in the data directory, or
 * Postgres), then closes the checkpointer and the dependencies, also when `work` or the opening fails.
 */
export async function withAgent<T>(
  settings: LoupeConfig,
  secrets: LoupeSecrets,
  work: (session: AgentSession) => Promise<T>,
  overrides: Partial<Omit<RuntimeDeps, "defaults">> = {},
): Promise<T> {
  const deps = createDeps(settings, secrets, overrides);
  try {
    const checkpointer = await openCheckpointer(settings, deps.database);
    try {
      return await work({ agent: createAgent({ deps, checkpointer: checkpointer.saver }), deps, where: checkpointer.where });
    } finally {
      await checkpointer.close();
    }
  } finally {
    await deps.close();
  }
}
