import type { TokenCredential } from '@azure/identity';
import { ServiceBusClient, type ServiceBusSender } from '@azure/service-bus';
import type { EventQueue } from '../../billing/queue.js';

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
 */
export function createServiceBusQueue(connection: ServiceBusConnection, queueName: string): EventQueue {
  const client =
    connection.kind === 'connectionString'
      ? new ServiceBusClient(connection.connectionString)
      : new ServiceBusClient(connection.fullyQualifiedNamespace, connection.credential);
  let sender: ServiceBusSender | undefined;
  const getSender = () => {
    if (!sender || sender.isClosed) sender = client.createSender(queueName);
    return sender;
  };
  return {
    name: queueName,
    async send(message, options = {}) {
      const delay = Math.max(0, options.delaySeconds ?? 0);
      await getSender().sendMessages({
        messageId: message.id,
        ...(message.orderingKey ? { sessionId: message.orderingKey } : {}),
        contentType: 'application/json',
        body: { id: message.id, orderingKey: message.orderingKey, body: message.body },
        // Scheduled delivery: the broker holds the message until then.
        ...(delay > 0 ? { scheduledEnqueueTimeUtc: new Date(Date.now() + delay * 1000) } : {}),
      });
    },
    async ping() {
      // Creating a batch opens the sender link and asks the broker for its limits: one real round trip.
      await getSender().createMessageBatch();
    },
  };
}
