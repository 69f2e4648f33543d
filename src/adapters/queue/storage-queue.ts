import type { TokenCredential } from '@azure/identity';
import { QueueClient } from '@azure/storage-queue';
import type { EventQueue } from '../../billing/queue.js';
import { withDeadline } from './deadline.js';

export type QueueConnection =
  | { readonly kind: 'connectionString'; readonly connectionString: string }
  | { readonly kind: 'endpoint'; readonly endpoint: string; readonly credential: TokenCredential };

/**
 * `EventQueue` on Azure Storage Queue (Azurite locally). Messages are JSON, base64-encoded because that
 * is what the Functions queue trigger expects by default. The queue is created on first use.
 * Each operation (the first one's queue creation included) has `timeoutMs` in all, retries included, and
 * fails with `QueueUnavailableError` otherwise.
 */
export function createStorageQueue(
  connection: QueueConnection,
  queueName: string,
  options: {
    /** How long one send (or ping) may take in all, the SDK's retries included. @default 10000 */
    readonly timeoutMs?: number;
  } = {},
): EventQueue {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client =
    connection.kind === 'connectionString'
      ? new QueueClient(connection.connectionString, queueName)
      : new QueueClient(`${connection.endpoint.replace(/\/$/, '')}/${queueName}`, connection.credential);
  let ready: Promise<unknown> | undefined;
  const ensureQueue = () => {
    ready ??= withDeadline(queueName, 'create', timeoutMs, (o) => client.createIfNotExists(o)).catch(
      (error: unknown) => {
        ready = undefined; // let the next send try again rather than caching a transient failure
        throw error;
      },
    );
    return ready;
  };
  return {
    name: queueName,
    async send(message, options = {}) {
      await ensureQueue();
      const text = JSON.stringify({ id: message.id, orderingKey: message.orderingKey, body: message.body });
      const delay = Math.max(0, Math.ceil(options.delaySeconds ?? 0));
      // A message sent invisible for `delay` seconds is the queue's own scheduled delivery (up to 7 days).
      await withDeadline(queueName, 'send', timeoutMs, (o) =>
        client.sendMessage(
          Buffer.from(text, 'utf8').toString('base64'),
          delay > 0 ? { ...o, visibilityTimeout: delay } : o,
        ),
      );
    },
    async ping() {
      await ensureQueue();
      await withDeadline(queueName, 'ping', timeoutMs, (o) => client.getProperties(o));
    },
  };
}
