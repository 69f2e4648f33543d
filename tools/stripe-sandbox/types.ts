import type { WireEvent } from './wire.js';

/** One price the sandbox creates at start, with its product (one product per distinct `productName`). */
export interface SandboxPriceSeed {
  /** Stripe `lookup_key`; the gateway resolves prices by it. Unique across seeds. */
  lookupKey: string;
  productName: string;
  /** Metadata of the product (the first seed naming a product sets it). */
  productMetadata: Record<string, string>;
  /** Smallest currency unit. */
  unitAmount: number;
  currency: string;
  /** `null` makes a one-time price (for `payment` mode checkouts). */
  recurring: { interval: 'day' | 'week' | 'month' | 'year' } | null;
}

export interface SandboxOptions {
  /** 0 takes a free port. @default 12111 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Where events are POSTed; may be set (or changed) later with `setWebhookUrl`. */
  webhookUrl?: string;
  /** `whsec_…`; every delivery is signed with it, exactly as Stripe signs. */
  webhookSecret: string;
  /** The API version the SDK is pinned to; requests asking for another version are refused. */
  apiVersion: string;
  prices: SandboxPriceSeed[];
  /** The sandbox clock's start. It stands still until advanced (like a Stripe test clock). @default now */
  startTime?: Date;
  /** @default true */
  deliverWebhooks?: boolean;
  /** Attempts per event and the first back-off, doubling. @default { attempts: 5, baseDelayMs: 200 } */
  webhookRetry?: { attempts: number; baseDelayMs: number };
}

export type SandboxEvent = WireEvent;

export interface SandboxDelivery {
  eventId: string;
  attempts: number;
  status: 'pending' | 'delivered' | 'failed';
  lastStatusCode?: number;
}

export interface StripeSandbox {
  /** Base URL, e.g. `http://127.0.0.1:12111`; API calls go to `${url}/v1/...`. */
  url: string;
  /** The sandbox clock. */
  now(): Date;
  /** Where later events are delivered; `undefined` stops delivery of later events. */
  setWebhookUrl(url: string | undefined): void;
  /** Every event emitted, in order, with full payloads. */
  events(): SandboxEvent[];
  /** One entry per event queued for delivery (events emitted with no webhook URL are not queued). */
  deliveries(): SandboxDelivery[];
  /** Resolves when no delivery is pending. */
  idle(): Promise<void>;
  /** Stops the server and abandons pending deliveries. */
  stop(): Promise<void>;
}
