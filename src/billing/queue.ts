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

export interface EventQueue {
  readonly name: string;
  send(message: QueueMessage): Promise<void>;
  /** Cheap round trip for health checks; throws when the queue cannot be reached. */
  ping(): Promise<void>;
}
