import { randomUUID } from 'node:crypto';
import type { LogHandler } from '@azure/functions';
import { QueueClient } from '@azure/storage-queue';
import { z } from 'zod';
import type { Services } from '../composition.js';
import { processBillingEvent } from '../functions/process-billing-event.js';
import { InvocationContext } from '../http/functions-runtime.js';

/** host.json `extensions.queues`: what the Functions host receives at once, and when it fetches more. */
export const HOST_QUEUE_SETTINGS = { batchSize: 16, newBatchThreshold: 16 } as const;
const NEW_BATCH_THRESHOLD = HOST_QUEUE_SETTINGS.newBatchThreshold;

export interface QueueWorkerOptions {
  readonly services: Services;
  readonly connectionString: string;
  /** Seconds a failed message stays invisible before its next delivery. @default 2 */
  readonly visibilityTimeoutSeconds?: number;
  /** Idle wait between empty polls. @default 100 */
  readonly pollMs?: number;
  readonly log?: LogHandler;
}

export interface QueueWorker {
  /** Resolves when the queue is empty and nothing is in flight (for tests). */
  drained(): Promise<void>;
  /** Messages moved to the poison queue so far. */
  poisoned(): readonly string[];
  stop(): Promise<void>;
}

/**
 * What the Functions host does for a queue trigger, for the local host: receive, call the same processor
 * function, delete on success; leave a failure to reappear after the visibility timeout; after
 * `maxDeliveries` attempts move it to `<queue>-poison` (the host's own convention) and log its event id.
 *
 * The processor handles its own failures (it re-sends transient ones with a delay and records permanent
 * ones), so it throws only when it could do neither; this poison queue is the last resort behind that.
 * Nothing a message does may stop the loop: every per-message path catches and logs, so a storage outage
 * during a delivery costs that delivery, never the `npm start` process.
 */
export async function startQueueWorker(options: QueueWorkerOptions): Promise<QueueWorker> {
  const { services, connectionString } = options;
  const log: LogHandler = options.log ?? (() => undefined);
  const queueName = services.config.queueName;
  const maxDeliveries = services.config.maxDeliveries;
  const queue = new QueueClient(connectionString, queueName);
  const poison = new QueueClient(connectionString, `${queueName}-poison`);
  await Promise.all([queue.createIfNotExists(), poison.createIfNotExists()]);
  const poisonedIds: string[] = [];
  let running = true;
  let inFlight = 0;
  const waiters: Array<{ since: number; resolve: () => void }> = [];

  type Item = Awaited<ReturnType<QueueClient['receiveMessages']>>['receivedMessageItems'][number];

  /** The host's poison move: copy to `<queue>-poison`, then delete. A failure leaves the message to come back. */
  const moveToPoison = async (item: Item, text: string) => {
    const eventId = eventIdOf(text) ?? `(queue message ${item.messageId})`;
    try {
      await poison.sendMessage(item.messageText);
      await queue.deleteMessage(item.messageId, item.popReceipt);
      poisonedIds.push(item.messageId);
      log(
        'error',
        `queue worker: event ${eventId} moved to ${queueName}-poison after ${item.dequeueCount} deliveries`,
      );
    } catch (error) {
      log(
        'error',
        `queue worker: event ${eventId} could not be moved to ${queueName}-poison; it will be tried again`,
        error,
      );
    }
  };

  const handle = async (item: Item, text: string) => {
    try {
      // A message that is back after its poison move failed goes straight there, as the host does.
      if (item.dequeueCount > maxDeliveries) {
        await moveToPoison(item, text);
        return;
      }
      const context = new InvocationContext({
        invocationId: randomUUID(),
        functionName: 'processBillingEvent',
        logHandler: log,
      });
      try {
        await processBillingEvent(text, context, services);
      } catch (error) {
        log(
          'warning',
          `queue worker: event ${eventIdOf(text) ?? item.messageId} failed (delivery ${item.dequeueCount} of ${maxDeliveries})`,
          error,
        );
        if (item.dequeueCount >= maxDeliveries) await moveToPoison(item, text);
        return;
      }
      try {
        await queue.deleteMessage(item.messageId, item.popReceipt);
      } catch (error) {
        // Applied but not deleted: it comes back, and applying it again changes nothing.
        log('warning', `queue worker: message ${item.messageId} applied but not deleted`, error);
      }
    } catch (error) {
      log('error', `queue worker: unexpected failure handling message ${item.messageId}`, error);
    } finally {
      inFlight--;
    }
  };

  /**
   * Whether nothing is left to do: nothing in flight, and the queue holds no message, visible or not. The
   * processor's redeliveries are sent invisible (delayed), so an empty receive alone does not mean done;
   * the queue's message count includes invisible messages.
   */
  const idle = async (): Promise<boolean> => {
    if (inFlight > 0) return false;
    const properties = await queue.getProperties();
    return (properties.approximateMessagesCount ?? 0) === 0;
  };

  /**
   * What the Functions host does (host.json `batchSize` 16, `newBatchThreshold` 16): another batch is
   * fetched as soon as no more than 16 messages are in flight, rather than after the whole batch is done.
   */
  const lanes = new Map<string, Promise<void>>();
  let release: (() => void) | undefined;
  const wake = () => {
    if (release && (inFlight <= NEW_BATCH_THRESHOLD || !running)) {
      const resolve = release;
      release = undefined;
      resolve();
    }
  };
  const belowThreshold = () =>
    inFlight <= NEW_BATCH_THRESHOLD
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          release = resolve;
        });

  const poll = async () => {
    await belowThreshold();
    if (!running) return;
    const pollStarted = Date.now();
    let received: Item[] = [];
    try {
      received = (
        await queue.receiveMessages({
          numberOfMessages: HOST_QUEUE_SETTINGS.batchSize,
          visibilityTimeout: options.visibilityTimeoutSeconds ?? 2,
        })
      ).receivedMessageItems;
    } catch (error) {
      if (!running) return;
      log('warning', 'queue worker: receive failed, retrying', error);
    }
    if (received.length === 0) {
      // Drained: a receive that began after the caller asked found nothing, and nothing is left.
      const due = waiters.filter((w) => w.since < pollStarted);
      if (due.length > 0 && (await idle())) {
        for (const waiter of due) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 100));
      return;
    }
    inFlight += received.length;
    // Like Service Bus sessions: one owner's events one at a time, in order; different owners in parallel.
    // Without this a batch of one customer's events races itself on the owner's row. Lanes outlive a
    // batch, so the next batch can be received while this one is still being applied.
    for (const item of received) {
      const text = Buffer.from(item.messageText, 'base64').toString('utf8');
      const key = orderingKeyOf(text) ?? item.messageId;
      const next = (lanes.get(key) ?? Promise.resolve()).then(() => handle(item, text));
      lanes.set(key, next);
      void next.finally(() => {
        if (lanes.get(key) === next) lanes.delete(key);
        wake();
      });
    }
  };

  const loop = (async () => {
    while (running) {
      try {
        await poll();
      } catch (error) {
        // `handle` catches its own; this is the idle check or something unforeseen. Never fatal.
        log('error', 'queue worker: poll failed, continuing', error);
        await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 100));
      }
    }
  })();

  return {
    drained: () => new Promise<void>((resolve) => waiters.push({ since: Date.now(), resolve })),
    poisoned: () => poisonedIds,
    async stop() {
      running = false;
      wake();
      await loop;
      await Promise.all(lanes.values());
    },
  };
}

/** The Stripe event id a message carries (`body.eventId`, or the envelope id of a version-1 message). */

function eventIdOf(text: string): string | undefined {
  const envelope = envelopeSchema.safeParse(safeJson(text));
  if (!envelope.success) return undefined;
  const ref = refIdSchema.safeParse(envelope.data.body);
  return ref.success ? ref.data.eventId : envelope.data.id;
}

const envelopeSchema = z.object({ id: z.string(), body: z.unknown() });
const refIdSchema = z.object({ eventId: z.string() });

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function orderingKeyOf(text: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      'orderingKey' in parsed &&
      typeof parsed.orderingKey === 'string'
    ) {
      return parsed.orderingKey;
    }
  } catch {
    // not ours: processed alone, and the processor refuses it
  }
  return undefined;
}
