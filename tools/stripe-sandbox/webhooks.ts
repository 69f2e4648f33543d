import http from 'node:http';
import https from 'node:https';
import Stripe from 'stripe';
import type { SandboxDelivery } from './types.js';
import type { WireEvent } from './wire.js';

export interface DispatcherOptions {
  readonly secret: string;
  readonly attempts: number;
  readonly baseDelayMs: number;
  /** Per-attempt timeout. @default 10000 */
  readonly timeoutMs?: number;
  /** Called once an event has been answered with a 2xx. */
  readonly onDelivered: (eventId: string) => void;
}

interface QueuedDelivery {
  readonly record: SandboxDelivery;
  readonly url: string;
  /** Serialized once, at emission: later changes to the stored event do not alter what is sent. */
  readonly payload: string;
}

/**
 * Delivers events the way Stripe does: `POST` with the event as a pretty-printed JSON body, signed in the
 * `Stripe-Signature` header by the SDK's own signer (timestamp from the real clock, so the receiver's
 * tolerance check passes whatever the sandbox clock says). One delivery at a time, in emission order;
 * a non-2xx answer or a network error is retried with doubling back-off, then marked failed, and the
 * next event goes out. Nothing here blocks an API response.
 */
export function createDispatcher(options: DispatcherOptions) {
  const queue: QueuedDelivery[] = [];
  const records: SandboxDelivery[] = [];
  let running = false;
  let stopped = false;
  let idleWaiters: Array<() => void> = [];
  let cancelWait: (() => void) | undefined;
  let inFlight: http.ClientRequest | undefined;

  function settleIdle(): void {
    if (running || queue.length > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        cancelWait = undefined;
        resolve();
      }, ms);
      cancelWait = () => {
        clearTimeout(timer);
        cancelWait = undefined;
        resolve();
      };
    });
  }

  function post(url: string, payload: string): Promise<number> {
    const target = new URL(url);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: options.secret,
      timestamp: Math.floor(Date.now() / 1000),
    });
    const client = target.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const request = client.request(
        target,
        {
          method: 'POST',
          // A fresh connection per delivery: nothing pooled outlives the receiver or the sandbox.
          agent: false,
          timeout: options.timeoutMs ?? 10_000,
          headers: {
            'content-type': 'application/json; charset=utf-8',
            'content-length': Buffer.byteLength(payload),
            'stripe-signature': signature,
            'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
            'cache-control': 'no-cache',
            accept: '*/*; q=0.5, application/xml',
          },
        },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', reject);
        },
      );
      inFlight = request;
      request.on('timeout', () => request.destroy(new Error('webhook delivery timed out')));
      request.on('error', reject);
      request.end(payload);
    }).finally(() => {
      inFlight = undefined;
    }) as Promise<number>;
  }

  async function deliver(item: QueuedDelivery): Promise<void> {
    const { record } = item;
    while (!stopped && record.attempts < options.attempts) {
      record.attempts += 1;
      try {
        const status = await post(item.url, item.payload);
        record.lastStatusCode = status;
        if (status >= 200 && status < 300) {
          record.status = 'delivered';
          options.onDelivered(record.eventId);
          return;
        }
      } catch {
        // A network error counts as a failed attempt, like a non-2xx answer.
        delete record.lastStatusCode;
      }
      if (stopped) return;
      if (record.attempts < options.attempts) await sleep(options.baseDelayMs * 2 ** (record.attempts - 1));
    }
    if (!stopped) record.status = 'failed';
  }

  async function pump(): Promise<void> {
    if (running) return;
    running = true;
    try {
      while (!stopped) {
        const next = queue.shift();
        if (!next) break;
        await deliver(next);
      }
    } finally {
      running = false;
      settleIdle();
    }
  }

  return {
    enqueue(event: WireEvent, url: string): void {
      const record: SandboxDelivery = { eventId: event.id, attempts: 0, status: 'pending' };
      records.push(record);
      queue.push({ record, url, payload: JSON.stringify(event, null, 2) });
      if (!stopped) void pump();
    },
    deliveries(): SandboxDelivery[] {
      return records.map((record) => ({ ...record }));
    },
    idle(): Promise<void> {
      if (stopped || (!running && queue.length === 0)) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    stop(): void {
      stopped = true;
      queue.length = 0;
      cancelWait?.();
      inFlight?.destroy();
      running = false;
      settleIdle();
    },
  };
}
