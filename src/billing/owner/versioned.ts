import { BillingError } from '../errors.js';
import type { OwnerId } from '../ids.js';
import type { OwnerSnapshot } from './snapshot.js';

/**
 * What every check, consume and summary answer says about its own freshness: the owner's snapshot
 * version it was computed from and when that snapshot was read. The version only grows (every change to
 * the snapshot bumps it in the same transaction), so a caller that caches answers can compare them and
 * ask for one at least as new as a version it has seen (`minVersion`).
 */
export interface Versioned {
  readonly version: number;
  /** ISO time the snapshot was read. */
  readonly asOf: string;
}

export const versionOf = (snapshot: Pick<OwnerSnapshot, 'version' | 'readAt'>): Versioned => ({
  version: snapshot.version.value,
  asOf: snapshot.readAt.toISOString(),
});

/** Whether a snapshot is at least as new as the caller asked; without `minVersion`, every snapshot is. */
export const reaches = (snapshot: Pick<OwnerSnapshot, 'version'>, minVersion: number | undefined) =>
  minVersion === undefined || snapshot.version.value >= minVersion;

/**
 * Even a fresh read is older than the caller's `minVersion`: the version does not exist here yet (it came
 * from a node ahead of this one's storage, or was made up). 409, with the version there is, so the caller
 * can wait and retry or accept the current answer knowingly.
 */
export function versionNotReached(ownerId: OwnerId, current: number, minVersion: number): BillingError {
  return new BillingError(
    'conflict',
    'version_not_reached',
    `The billing state of ${ownerId} is at version ${current}, older than the minVersion ${minVersion} asked for; retry later, or ask without minVersion.`,
    undefined,
    undefined,
    { extensions: { version: current, minVersion } },
  );
}

/** @throws BillingError `version_not_reached` when even this fresh snapshot is older than `minVersion`. */
export function requireVersion(snapshot: Pick<OwnerSnapshot, 'ownerId' | 'version'>, minVersion?: number) {
  if (minVersion !== undefined && !reaches(snapshot, minVersion))
    throw versionNotReached(snapshot.ownerId, snapshot.version.value, minVersion);
}

export const isVersionNotReached = (error: unknown): error is BillingError =>
  error instanceof BillingError && error.code === 'version_not_reached';
