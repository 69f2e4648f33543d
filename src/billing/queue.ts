/**
 * The event queue port: HTTP functions enqueue, the processor applies. Service Bus in Azure, Azure
 * Storage Queue on Azurite and as the cheaper option; both honour this contract.
 */
export interface QueueMessage {
  /** Stable id used for duplicate detection (the Stripe event id for webhooks). */
  readonly id: string;
  /**
   * Messages with one key are delivered in order where the transport supports it (the Service Bus
   * session id). Webhooks use the Stripe customer id: one customer, one billing owner.
   */
  readonly orderingKey?: string;
  readonly body: unknown;
}

export interface SendOptions {
  /** Deliver no earlier than this many seconds from now (a redelivery's back-off). @default 0 */
  readonly delaySeconds?: number;
}

export interface EventQueue {
  readonly name: string;
  /**
   * Service Bus drops a second message with the same `id` inside its duplicate-detection window, so a
   * redelivery must carry an id of its own.
   */
  send(message: QueueMessage, options?: SendOptions): Promise<void>;
  /** Cheap round trip for health checks; throws when the queue cannot be reached. */
  ping(): Promise<void>;
}

/**
 * The queue did not take the message (or did not answer within the storage timeout): a network failure,
 * a 5xx, throttling, auth, a frozen service. Retry later; the webhook answers 503 so that Stripe does.
 */
export class QueueUnavailableError extends Error {
  readonly code = 'queue_unavailable';
  constructor(
    message: string,
    readonly queue: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
    this.name = 'QueueUnavailableError';
  }
}
