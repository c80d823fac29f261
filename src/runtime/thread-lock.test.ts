// The SQLite thread lock in-process: taken, refused while held, freed by release, taken over from a dead or reused pid.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { advisoryKey, currentOwner, SqliteThreadLocks, type LockOwner, type ThreadLockAttempt } from "./thread-lock.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "loupe-lock-unit-"));
});
afterEach(async () => {
  vi.useRealTimers();
  await rm(dir, { recursive: true, force: true });
});

async function release(attempt: ThreadLockAttempt): Promise<void> {
  if (!attempt.held) throw new Error(`expected the lock to be held, it is held by ${attempt.holder}`);
  await attempt.release();
}

/** A pid no process has any more: a child that has already exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid;
}

describe("SqliteThreadLocks", () => {
  it("refuses a second runner of a held thread, naming the holder, until the lock is released", async () => {
    const locks = new SqliteThreadLocks(dir);
    const first = await locks.tryAcquire("t-1");
    expect(first.held).toBe(true);
    expect(await locks.tryAcquire("t-1")).toEqual({ held: false, holder: `pid ${process.pid}` });
    expect(await new SqliteThreadLocks(dir).tryAcquire("t-1")).toEqual({ held: false, holder: `pid ${process.pid}` });
    const other = await locks.tryAcquire("t-2");
    await release(first);
    await release(first); // idempotent
    await release(await locks.tryAcquire("t-1"));
    await release(other);
  });

  it("takes over a lock whose owner is dead, or whose pid now belongs to a process started at another time", async () => {
    const me = currentOwner();
    const lost = await new SqliteThreadLocks(dir, { ...me, pid: deadPid() }).tryAcquire("t-dead");
    const taken = await new SqliteThreadLocks(dir).tryAcquire("t-dead");
    expect(taken.held).toBe(true);
    // Releasing the lock it lost does not free the new holder's.
    await release(lost);
    expect(await new SqliteThreadLocks(dir).tryAcquire("t-dead")).toEqual({ held: false, holder: `pid ${process.pid}` });
    await release(taken);

    if (me.started !== null) {
      await new SqliteThreadLocks(dir, { ...me, started: "1" }).tryAcquire("t-reused");
      await release(await new SqliteThreadLocks(dir).tryAcquire("t-reused"));
    }
  });

  it("a lock from another machine is stale a minute after its holder last renewed it, and renewed every 15 s while held", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const remote: LockOwner = { pid: 4242, started: null, host: "other-machine" };
    let remoteClock = Date.now() - 61_000;
    const remoteLocks = new SqliteThreadLocks(dir, remote, () => remoteClock);
    const here = new SqliteThreadLocks(dir);

    await remoteLocks.tryAcquire("t-crashed"); // then its machine died: no renewal since
    await release(await here.tryAcquire("t-crashed"));

    const held = await remoteLocks.tryAcquire("t-remote");
    remoteClock = Date.now();
    vi.advanceTimersByTime(15_000);
    expect(await here.tryAcquire("t-remote")).toEqual({ held: false, holder: "pid 4242 on other-machine" });
    await release(held);
  });
});

describe("advisoryKey", () => {
  it("is a stable signed 64-bit key per thread id", () => {
    expect(advisoryKey("t-1")).toBe(advisoryKey("t-1"));
    expect(advisoryKey("t-1")).not.toBe(advisoryKey("t-2"));
    expect(BigInt.asIntN(64, advisoryKey("some thread"))).toBe(advisoryKey("some thread"));
  });
});
