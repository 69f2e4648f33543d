import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * The pid file of the Azurite that `npm start` runs on a data directory, kept in that directory. The
 * Azurite child also dies with its parent (see `startAzurite`); this is the second line: should one
 * survive anyway (its parent killed before the guard was armed, an older checkout without it), the next
 * start on the same data finds it here and stops it instead of failing on a port in use.
 */
export const PID_FILE_NAME = 'azurite.pid';

const pidSchema = z.coerce.number<string>().int().positive();

export const pidFileOf = (location: string) => path.join(location, PID_FILE_NAME);

export function writePidFile(location: string, pid: number): void {
  writeFileSync(pidFileOf(location), `${pid}\n`);
}

/** Removes the pid file if it still names `pid` (a later start may have written its own). */
export function removePidFile(location: string, pid: number): void {
  if (readPidFile(location) === pid) rmSync(pidFileOf(location), { force: true });
}

/** The pid recorded for `location`, or `undefined` when there is none (or it is unreadable). */
export function readPidFile(location: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidFileOf(location), 'utf8');
  } catch {
    return undefined; // no file: nothing was left running
  }
  const parsed = pidSchema.safeParse(text.trim());
  return parsed.success ? parsed.data : undefined;
}

/**
 * Whether `pid` is a live Azurite started by `startAzurite` on this data directory: its command line
 * runs `azuriteBin` with `--location <location>`. Read from `/proc/<pid>/cmdline`, so Linux only;
 * elsewhere, and for any process we cannot read (gone, a zombie, another user's), the answer is no,
 * because a process we are not sure of must never be killed.
 */
export function isOurAzurite(pid: number, azuriteBin: string, location: string): boolean {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return false;
  }
  const args = cmdline.split('\0');
  const at = args.indexOf('--location');
  return args.includes(azuriteBin) && at >= 0 && args[at + 1] === location;
}

export type StaleOutcome =
  /** No pid file, or it named no live Azurite of ours (the process is gone, or it is a stranger). */
  | { readonly kind: 'none' }
  /** An Azurite of ours was still running on this data, and is stopped now. */
  | { readonly kind: 'stopped'; readonly pid: number };

/**
 * Stops the Azurite the pid file of `location` names, if it is alive and ours (see `isOurAzurite`):
 * SIGTERM so it saves its data, SIGKILL after `graceMs`. The pid file is removed either way.
 */
export async function stopStaleAzurite(
  location: string,
  azuriteBin: string,
  graceMs = 5_000,
): Promise<StaleOutcome> {
  const pid = readPidFile(location);
  if (pid === undefined) return { kind: 'none' };
  const ours = () => isOurAzurite(pid, azuriteBin, location);
  if (!ours()) {
    rmSync(pidFileOf(location), { force: true });
    return { kind: 'none' };
  }
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // Exited between the check and the signal: what we wanted.
    }
  };
  const goneWithin = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (ours()) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  };
  signal('SIGTERM');
  if (!(await goneWithin(graceMs))) {
    signal('SIGKILL');
    await goneWithin(graceMs);
  }
  rmSync(pidFileOf(location), { force: true });
  return { kind: 'stopped', pid };
}
