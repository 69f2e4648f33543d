import { randomUUID } from 'node:crypto';
import type { InvocationContext as InvocationContextType, LogHandler } from '@azure/functions';
import type { Services } from '../composition.js';
import { InvocationContext } from '../http/functions-runtime.js';

export interface LocalTimer {
  readonly name: string;
  /** How often the local host runs it (the Functions host uses the job's CRON schedule). */
  readonly everyMs: number;
  readonly run: (services: Services, context: InvocationContextType) => Promise<void>;
}

/**
 * The local host's stand-in for timer triggers: each job runs once at start and then every `everyMs`,
 * never overlapping itself. Failures are logged and retried at the next tick, as in Azure.
 */
export function startTimers(
  services: Services,
  timers: readonly LocalTimer[],
  log: LogHandler,
): { stop(): void } {
  const handles = timers.map((timer) => {
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      const context = new InvocationContext({
        invocationId: randomUUID(),
        functionName: timer.name,
        logHandler: log,
      });
      try {
        await timer.run(services, context);
      } catch (error) {
        log('error', `timer ${timer.name} failed`, error);
      } finally {
        running = false;
      }
    };
    void tick();
    const handle = setInterval(() => void tick(), timer.everyMs);
    handle.unref();
    return handle;
  });
  return { stop: () => handles.forEach(clearInterval) };
}
