import type { TokenCredential } from '@azure/identity';
import { ServiceBusClient, type ServiceBusSender } from '@azure/service-bus';
import type { EventQueue } from '../../billing/queue.js';
import { withDeadline } from './deadline.js';

export type ServiceBusConnection =
  | { readonly kind: 'connectionString'; readonly connectionString: string }
  | {
      readonly kind: 'namespace';
      readonly fullyQualifiedNamespace: string;
      readonly credential: TokenCredential;
    };

/**
 * `EventQueue` on Azure Service Bus, for production. `messageId` is the Stripe event id, so the queue's
 * duplicate detection drops a webhook Stripe delivers twice within the detection window; `sessionId` is
 * the ordering key (the Stripe customer), so one owner's events are processed one at a time, in order.
 * The queue must be created with sessions and duplicate detection enabled (see infra/).
 *
 * A send (opening the link included) has `timeoutMs` in all: the client's per-try timeout is set to it
 * and the abort signal of each call bounds the SDK's retries and the waits between them. A send that
 * fails or runs out of time throws `QueueUnavailableError`.
 */
export function createServiceBusQueue(
  connection: ServiceBusConnection,
  queueName: string,
  options: {
    /** How long one send (or ping) may take in all, the SDK's retries included. @default 10000 */
    readonly timeoutMs?: number;
  } = {},
): EventQueue {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const clientOptions = { retryOptions: { timeoutInMs: timeoutMs } };
  const client =
    connection.kind === 'connectionString'
      ? new ServiceBusClient(connection.connectionString, clientOptions)
      : new ServiceBusClient(connection.fullyQualifiedNamespace, connection.credential, clientOptions);
  let sender: ServiceBusSender | undefined;
  const getSender = () => {
    if (!sender || sender.isClosed) sender = client.createSender(queueName);
    return sender;
  };
  return {
    name: queueName,
    async send(message, options = {}) {
      const delay = Math.max(0, options.delaySeconds ?? 0);
      await withDeadline(queueName, 'send', timeoutMs, (o) =>
        getSender().sendMessages(
          {
            messageId: message.id,
            ...(message.orderingKey ? { sessionId: message.orderingKey } : {}),
            contentType: 'application/json',
            body: { id: message.id, orderingKey: message.orderingKey, body: message.body },
            // Scheduled delivery: the broker holds the message until then.
            ...(delay > 0 ? { scheduledEnqueueTimeUtc: new Date(Date.now() + delay * 1000) } : {}),
          },
          o,
        ),
      );
    },
    async ping() {
      // Creating a batch opens the sender link and asks the broker for its limits: one real round trip.
      await withDeadline(queueName, 'ping', timeoutMs, (o) => getSender().createMessageBatch(o));
    },
  };
}
