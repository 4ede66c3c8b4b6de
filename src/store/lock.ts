// An exclusive per-run lock file so two processes never train the same run at once, on one machine or on
// several that share the store (NFS).
//
// Protocol: the lock is `<dir>/lock`, created with O_EXCL and holding {pid, host, startedAt, heartbeatAt,
// leaseSeconds}. It is a lease: the holder rewrites heartbeatAt every leaseSeconds/4 while it holds the lock.
// A lock is stale when its pid is dead on this host; from another host, where no pid can be checked, when its
// heartbeat is older than its lease (the holder died or lost the store); or when it is unreadable and older
// than STALE_UNREADABLE_MS (its writer died between creating and filling it). Judging another host's
// heartbeat compares clocks: the hosts' clocks must agree to well within the lease (NTP does). Stale locks are removed only under a short-lived
// recovery guard (`<dir>/lock.recover`, also O_EXCL), so two processes recovering the same stale lock
// cannot delete each other's fresh lock: whoever holds the guard re-checks that the file is still the
// stale one before unlinking it, and both then race on the exclusive create, which only one wins.
//
// A holder whose lease expired (it lost the store for longer than the lease) may find its lock taken over:
// verify() says so, and a trainer calls it before each write to the run, which is the other host's now.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO 8601 time the lock was taken. */
  startedAt: string;
  /** ISO 8601 time the holder last renewed the lease (startedAt in a lock written before leases). */
  heartbeatAt: string;
  /** The lease: the holder renews well within it; after it, another host may take the lock over. */
  leaseSeconds: number;
}

export interface LockOptions {
  /** The lease (default 60 s; renewed every quarter of it). */
  leaseSeconds?: number;
  /** Called once a renewal or verify() finds the lock no longer ours (another host took it over after the lease expired). */
  onLost?: (message: string) => void;
}

const DEFAULT_LEASE_SECONDS = 60;

/** An unreadable lock younger than this may still be being written by a live process. */
const STALE_UNREADABLE_MS = 60_000;
/** The recovery guard is held for microseconds; one this old was left by a process that died holding it. */
const STALE_GUARD_MS = 10_000;
/** Bounds the retry loop when other processes are concurrently recovering or taking the lock. */
const MAX_ATTEMPTS = 50;
const RETRY_DELAY_MS = 20;

/**
 * Thrown where a process finds that another one took over the lock of the run it was training (after its
 * lease expired: this host lost the store, or its clock is off). The run is the other process's now: this
 * one stops it without writing another byte to its directory.
 */
export class LockLostError extends Error {
  /** Who holds the lock now; null when the lock file is gone or unreadable. */
  readonly holder: LockHolder | null;

  constructor(run: string, holder: LockHolder | null) {
    const who = holder ? `process ${holder.pid} on ${holder.host}` : "another process";
    super(`run ${run}: ${who} took the run over after this process's lease expired; stopped without writing more`);
    this.name = "LockLostError";
    this.holder = holder;
  }
}

export class RunLockedError extends Error {
  /** Who holds the lock; null when the lock file is unreadable (e.g. still being written). */
  readonly holder: LockHolder | null;
  readonly lockPath: string;

  constructor(lockPath: string, holder: LockHolder | null) {
    const who = holder
      ? `process ${holder.pid} on host ${holder.host} since ${holder.startedAt}`
      : "a process whose lock file is not readable yet";
    const remedy =
      holder && holder.host !== os.hostname()
        ? `its lease (${holder.leaseSeconds} s, last renewed ${holder.heartbeatAt}) must expire before another host takes it over`
        : `if no such process is running, delete ${lockPath}`;
    super(`run ${path.dirname(lockPath)} is locked by ${who}; ${remedy}`);
    this.name = "RunLockedError";
    this.lockPath = lockPath;
    this.holder = holder;
  }
}

/**
 * Locks held by this process, keyed by the lock file's identity (one directory can be named by
 * different paths); released on exit so a normal exit never leaves a lock behind.
 */
const heldLocks = new Map<string, RunLock>();
let exitHookInstalled = false;

function releaseAllOnExit(): void {
  for (const lock of heldLocks.values()) {
    try {
      lock.release();
    } catch {
      // exiting anyway; a leftover lock is recovered as stale since our pid will be dead
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function parseHolder(text: string): LockHolder | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const { pid, host, startedAt, heartbeatAt, leaseSeconds } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) return null;
  if (typeof host !== "string" || typeof startedAt !== "string") return null;
  return {
    pid: pid as number,
    host,
    startedAt,
    heartbeatAt: typeof heartbeatAt === "string" ? heartbeatAt : startedAt,
    leaseSeconds: typeof leaseSeconds === "number" && leaseSeconds > 0 ? leaseSeconds : DEFAULT_LEASE_SECONDS,
  };
}

function fileIdentity(stat: fs.Stats): string {
  return `${stat.dev}:${stat.ino}`;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user
    return errnoCode(err) !== "ESRCH";
  }
}

interface LockFileState {
  holder: LockHolder | null;
  stale: boolean;
}

/** Reads the lock at `lockPath`; null when there is none. */
function inspectLock(lockPath: string): LockFileState | null {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, "r");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return null;
    throw err;
  }
  try {
    // stat and content from one open file, so they describe the same lock even if it is being replaced
    const stat = fs.fstatSync(fd);
    const holder = parseHolder(fs.readFileSync(fd, "utf8"));
    return { holder, stale: isStale(holder, stat) };
  } finally {
    fs.closeSync(fd);
  }
}

/** Who holds the lock at `lockPath` now; null when there is none or it cannot be read. */
export function readLockHolder(lockPath: string): LockHolder | null {
  try {
    return inspectLock(lockPath)?.holder ?? null;
  } catch {
    return null;
  }
}

function isStale(holder: LockHolder | null, stat: fs.Stats): boolean {
  if (!holder) return Date.now() - stat.mtimeMs > STALE_UNREADABLE_MS;
  // Another host's process cannot be checked from here: its lease can.
  if (holder.host !== os.hostname()) return leaseExpired(holder);
  // Our own pid but not held by this process: left by an earlier process that had the same pid
  // (common in containers, where the pid namespace restarts).
  if (holder.pid === process.pid) return !heldLocks.has(fileIdentity(stat));
  return !isProcessAlive(holder.pid);
}

function leaseExpired(holder: LockHolder): boolean {
  const heartbeat = Date.parse(holder.heartbeatAt);
  return Number.isNaN(heartbeat) || Date.now() - heartbeat > holder.leaseSeconds * 1000;
}

/**
 * Removes the lock if it is still stale when re-checked under the guard (another process may have
 * recovered and re-taken it since we looked). Returns false when another process holds the guard.
 */
function removeStaleLock(lockPath: string): boolean {
  const guardPath = `${lockPath}.recover`;
  let guard: number;
  try {
    guard = fs.openSync(guardPath, "wx");
  } catch (err) {
    if (errnoCode(err) !== "EEXIST") throw err;
    removeAbandonedGuard(guardPath);
    return false;
  }
  try {
    const current = inspectLock(lockPath);
    if (current?.stale) fs.unlinkSync(lockPath);
  } finally {
    fs.closeSync(guard);
    fs.rmSync(guardPath, { force: true });
  }
  return true;
}

function removeAbandonedGuard(guardPath: string): void {
  try {
    if (Date.now() - fs.statSync(guardPath).mtimeMs > STALE_GUARD_MS) fs.rmSync(guardPath, { force: true });
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
}

export class RunLock {
  /** The lock file, `<dir>/lock`. */
  readonly path: string;
  readonly holder: LockHolder;
  /** The exact bytes last written, so release() and renewals never touch a lock that is no longer ours. */
  private content: string;
  private identity: string;
  private held = true;
  private readonly renewal: ReturnType<typeof setInterval>;
  private readonly onLost?: (message: string) => void;
  /** Once the lock is lost: who held it then (null: nobody readable, or not lost). */
  takenOverBy: LockHolder | null = null;

  private constructor(lockPath: string, holder: LockHolder, content: string, identity: string, options: LockOptions) {
    this.path = lockPath;
    this.holder = holder;
    this.content = content;
    this.identity = identity;
    this.onLost = options.onLost;
    // unref: a held lock alone does not keep the process alive
    this.renewal = setInterval(() => this.renew(), (holder.leaseSeconds * 1000) / 4);
    this.renewal.unref();
  }

  /** Takes the lock on the run directory `dir`, recovering a stale lock; throws RunLockedError if held. */
  static acquire(dir: string, options: LockOptions = {}): RunLock {
    const lockPath = path.join(dir, "lock");
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const lock = RunLock.tryCreate(lockPath, options);
      if (lock) return lock;
      const existing = inspectLock(lockPath);
      if (!existing) continue; // released between our create and our read
      if (!existing.stale) throw new RunLockedError(lockPath, existing.holder);
      if (!removeStaleLock(lockPath)) sleepSync(RETRY_DELAY_MS);
    }
    throw new Error(
      `could not take ${lockPath} after ${MAX_ATTEMPTS} attempts: other processes keep contending for it`,
    );
  }

  /** Exclusive create; null if a lock file already exists. */
  private static tryCreate(lockPath: string, options: LockOptions): RunLock | null {
    let fd: number;
    try {
      fd = fs.openSync(lockPath, "wx", 0o644);
    } catch (err) {
      if (errnoCode(err) === "EEXIST") return null;
      throw err;
    }
    const now = new Date().toISOString();
    const leaseSeconds = options.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    if (!(leaseSeconds > 0)) throw new Error(`lock lease must be a positive number of seconds (got ${leaseSeconds})`);
    const holder: LockHolder = {
      pid: process.pid,
      host: os.hostname(),
      startedAt: now,
      heartbeatAt: now,
      leaseSeconds,
    };
    const content = JSON.stringify(holder);
    let stat: fs.Stats;
    try {
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
      stat = fs.fstatSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(lockPath, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    const lock = new RunLock(lockPath, holder, content, fileIdentity(stat), options);
    heldLocks.set(lock.identity, lock);
    if (!exitHookInstalled) {
      process.on("exit", releaseAllOnExit);
      exitHookInstalled = true;
    }
    return lock;
  }

  /** Whether this process still holds the lock (false after release() or once another host took it over). */
  get isHeld(): boolean {
    return this.held;
  }

  /**
   * Whether the lock file still holds what this process last wrote, read now (a store that cannot be read
   * for now counts as ours). Once it does not, the lock is lost for good: renewals stop and onLost is called.
   */
  verify(): boolean {
    if (!this.held) return false;
    let current: string;
    try {
      current = fs.readFileSync(this.path, "utf8");
    } catch (err) {
      if (errnoCode(err) !== "ENOENT") return true; // the store is unreachable for now
      current = "";
    }
    if (current === this.content) return true;
    this.stopHolding();
    this.takenOverBy = parseHolder(current);
    this.onLost?.(`lost the lock ${this.path}: another process took it over after our lease expired`);
    return false;
  }

  /**
   * Renews the lease: rewrites the lock with a new heartbeat (a new file renamed over it, so a reader sees the
   * old lock or the new one, never half of one), unless it is no longer ours.
   */
  renew(): void {
    if (!this.verify()) return;
    const content = JSON.stringify({ ...this.holder, heartbeatAt: new Date().toISOString() });
    const temp = `${this.path}.${process.pid}.renew`;
    try {
      fs.writeFileSync(temp, content);
      fs.renameSync(temp, this.path);
    } catch (err) {
      // the run directory is gone (nothing left to hold), or the store is unreachable for now (try again)
      if (errnoCode(err) === "ENOENT") this.stopHolding();
      return;
    }
    heldLocks.delete(this.identity);
    this.identity = fileIdentity(fs.statSync(this.path));
    this.content = content;
    heldLocks.set(this.identity, this);
  }

  /** Removes the lock file if it is still ours; safe to call more than once. */
  release(): void {
    if (!this.held) return;
    this.stopHolding();
    let text: string;
    try {
      text = fs.readFileSync(this.path, "utf8");
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return;
      throw err;
    }
    if (text === this.content) fs.rmSync(this.path, { force: true });
  }

  private stopHolding(): void {
    this.held = false;
    clearInterval(this.renewal);
    heldLocks.delete(this.identity);
  }
}
