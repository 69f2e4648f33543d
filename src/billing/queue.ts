/**
 * The event queue port: HTTP functions enqueue, the processor applies. Service Bus in Azure, Azure
 * Storage Queue on Azurite and as the cheaper option; both honour this contract.
 */
export interface QueueMessage {
  /** Stable id used for duplicate detection (the Stripe event id for webhooks). */
  readonly id: string;
  /** Messages of one billing owner are processed in order where the transport supports sessions. */
  readonly ownerId?: string;
  readonly body: unknown;
}

export interface EventQueue {
  readonly name: string;
  send(message: QueueMessage): Promise<void>;
  /** Cheap round trip for health checks; throws when the queue cannot be reached. */
  ping(): Promise<void>;
}
