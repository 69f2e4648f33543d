import type { OwnerId } from './ids.js';

/**
 * One lane per billing owner inside this process: tasks for the same owner run one after another,
 * tasks for different owners run concurrently. Metering and credits queue every write for an owner
 * here, so writers in one process never race each other for the owner's counter and balance rows
 * (which would turn a burst into ETag-conflict retries); ETag conditions remain for other processes.
 *
 * Pass one instance to both `createMetering` and `createCredits` so they share the lanes.
 */
export interface OwnerLanes {
  /** Runs `task` after every task queued earlier for this owner; resolves or rejects with it. */
  run<T>(ownerId: OwnerId, task: () => Promise<T>): Promise<T>;
  /** Owners with queued or running tasks (for tests and diagnostics). */
  readonly busyOwners: number;
}

export function createOwnerLanes(): OwnerLanes {
  const tails = new Map<OwnerId, Promise<void>>();
  const settle = () => undefined;
  return {
    run<T>(ownerId: OwnerId, task: () => Promise<T>): Promise<T> {
      const previous = tails.get(ownerId) ?? Promise.resolve();
      const result = previous.then(task);
      // The tail never rejects: one failed task must not poison the lane for the next.
      const tail = result.then(settle, settle);
      tails.set(ownerId, tail);
      void tail.then(() => {
        if (tails.get(ownerId) === tail) tails.delete(ownerId);
      });
      return result;
    },
    get busyOwners() {
      return tails.size;
    },
  };
}
