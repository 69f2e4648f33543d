import { randomUUID } from 'node:crypto';
import type { InvocationContext as InvocationContextType, LogHandler } from '@azure/functions';
import type { Services } from '../composition.js';
import { InvocationContext } from '../http/functions-runtime.js';
import { inInvocationSpan } from '../telemetry/invocation.js';
import { withInvocationId } from './log.js';

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
      const invocationId = randomUUID();
      const context = new InvocationContext({
        invocationId,
        functionName: timer.name,
        logHandler: withInvocationId(log, invocationId),
      });
      try {
        // The same span as the Functions host's timers get from `traced` at registration.
        await inInvocationSpan(context, 'timer', () => timer.run(services, context));
      } catch {
        // Logged by the invocation span, with the invocation id; the next tick retries.
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
