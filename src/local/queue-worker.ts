import { randomUUID } from 'node:crypto';
import type { LogHandler } from '@azure/functions';
import { QueueClient } from '@azure/storage-queue';
import type { Services } from '../composition.js';
import { processBillingEvent } from '../functions/process-billing-event.js';
import { InvocationContext } from '../http/functions-runtime.js';

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
 */
export async function startQueueWorker(options: QueueWorkerOptions): Promise<QueueWorker> {
  const { services, connectionString } = options;
  const queueName = services.config.queueName;
  const queue = new QueueClient(connectionString, queueName);
  const poison = new QueueClient(connectionString, `${queueName}-poison`);
  await Promise.all([queue.createIfNotExists(), poison.createIfNotExists()]);
  const poisonedIds: string[] = [];
  let running = true;
  let inFlight = 0;
  /** Messages that failed and will come back after their visibility timeout. */
  const retrying = new Set<string>();
  const waiters: Array<{ since: number; resolve: () => void }> = [];

  const loop = (async () => {
    while (running) {
      const pollStarted = Date.now();
      let received: Awaited<ReturnType<QueueClient['receiveMessages']>>['receivedMessageItems'] = [];
      try {
        received = (
          await queue.receiveMessages({
            numberOfMessages: 16,
            visibilityTimeout: options.visibilityTimeoutSeconds ?? 2,
          })
        ).receivedMessageItems;
      } catch (error) {
        if (!running) break;
        options.log?.('warning', 'queue worker: receive failed, retrying', error);
      }
      if (received.length === 0) {
        // Drained: a receive that began after the caller asked found nothing, nothing is being processed
        // and no failed message is due back.
        if (inFlight === 0 && retrying.size === 0) {
          for (const waiter of waiters.filter((w) => w.since < pollStarted)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve();
          }
        }
        await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 100));
        continue;
      }
      inFlight += received.length;
      const handle = async (item: (typeof received)[number], text: string) => {
        const context = new InvocationContext({
          invocationId: randomUUID(),
          functionName: 'processBillingEvent',
          ...(options.log ? { logHandler: options.log } : {}),
        });
        try {
          await processBillingEvent(text, context, services);
          await queue.deleteMessage(item.messageId, item.popReceipt);
          retrying.delete(item.messageId);
        } catch {
          retrying.add(item.messageId);
          if (item.dequeueCount >= services.config.maxDeliveries) {
            retrying.delete(item.messageId);
            await poison.sendMessage(item.messageText);
            await queue.deleteMessage(item.messageId, item.popReceipt);
            poisonedIds.push(item.messageId);
            options.log?.(
              'error',
              `queue worker: message ${item.messageId} moved to ${queueName}-poison after ${item.dequeueCount} deliveries`,
            );
          }
        } finally {
          inFlight--;
        }
      };
      // Like Service Bus sessions: one owner's events one at a time, in order; different owners in parallel.
      // Without this a batch of one customer's events races itself on the owner's row.
      const groups = new Map<string, Array<{ item: (typeof received)[number]; text: string }>>();
      for (const item of received) {
        const text = Buffer.from(item.messageText, 'base64').toString('utf8');
        const key = orderingKeyOf(text) ?? item.messageId;
        groups.set(key, [...(groups.get(key) ?? []), { item, text }]);
      }
      await Promise.all(
        [...groups.values()].map(async (group) => {
          for (const { item, text } of group) await handle(item, text);
        }),
      );
    }
  })();

  return {
    drained: () => new Promise<void>((resolve) => waiters.push({ since: Date.now(), resolve })),
    poisoned: () => poisonedIds,
    async stop() {
      running = false;
      await loop;
    },
  };
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
