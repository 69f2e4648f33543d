import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createEngine } from './engine/index.js';
import { createRequestListener } from './server.js';
import type { SandboxOptions, StripeSandbox } from './types.js';
import { createDispatcher } from './webhooks.js';

export { decodeForm, FormDecodeError, type FormObject, type FormValue } from './form.js';
export type {
  SandboxDelivery,
  SandboxEvent,
  SandboxOptions,
  SandboxPriceSeed,
  StripeSandbox,
} from './types.js';

const DEFAULT_PORT = 12111;
const DEFAULT_RETRY = { attempts: 5, baseDelayMs: 200 } as const;

/**
 * Starts the local Stripe sandbox: an in-memory, Stripe-compatible HTTP server for the endpoints the
 * billing backend uses, which the official SDK talks to unchanged when constructed with
 * `{ host, port, protocol: 'http' }`. A development and test tool; it never runs in Azure.
 *
 * ```ts
 * const sandbox = await startStripeSandbox({ port: 0, webhookSecret, apiVersion, prices });
 * const { port } = new URL(sandbox.url);
 * const stripe = new Stripe('sk_test_sandbox', { host: '127.0.0.1', port, protocol: 'http', apiVersion });
 * ```
 */
export async function startStripeSandbox(options: SandboxOptions): Promise<StripeSandbox> {
  if (!options.webhookSecret.startsWith('whsec_')) {
    throw new Error('The sandbox webhook secret must start with "whsec_", like a Stripe endpoint secret.');
  }
  const retry = options.webhookRetry ?? DEFAULT_RETRY;
  if (!Number.isInteger(retry.attempts) || retry.attempts < 1 || retry.baseDelayMs < 0) {
    throw new Error('webhookRetry needs attempts >= 1 and baseDelayMs >= 0.');
  }
  const host = options.host ?? '127.0.0.1';
  let webhookUrl = options.webhookUrl;
  let deliver = options.deliverWebhooks ?? true;
  let baseUrl = '';

  const engineRef: { markDelivered: (eventId: string) => void } = { markDelivered: () => undefined };
  const dispatcher = createDispatcher({
    secret: options.webhookSecret,
    attempts: retry.attempts,
    baseDelayMs: retry.baseDelayMs,
    onDelivered: (eventId) => engineRef.markDelivered(eventId),
  });
  const engine = createEngine({
    apiVersion: options.apiVersion,
    startTime: Math.floor((options.startTime ?? new Date()).getTime() / 1000),
    prices: options.prices,
    baseUrl: () => baseUrl,
    willDeliver: () => deliver && webhookUrl !== undefined,
    publish: (event) => {
      // Like Stripe, an event goes to the endpoints that exist when it happens.
      if (deliver && webhookUrl !== undefined) dispatcher.enqueue(event, webhookUrl);
    },
  });
  engineRef.markDelivered = engine.markDelivered;

  const server = http.createServer(
    createRequestListener({
      engine,
      apiVersion: options.apiVersion,
      webhooks: {
        url: () => webhookUrl,
        setUrl: (url) => {
          webhookUrl = url;
        },
        enabled: () => deliver,
        setEnabled: (enabled) => {
          deliver = enabled;
        },
        deliveries: () => dispatcher.deliveries(),
      },
    }),
  );
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? DEFAULT_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;

  return {
    url: baseUrl,
    now: () => new Date(engine.now() * 1000),
    setWebhookUrl(url) {
      webhookUrl = url;
    },
    events: () => structuredClone(engine.events()),
    deliveries: () => dispatcher.deliveries(),
    idle: () => dispatcher.idle(),
    stop: () =>
      new Promise<void>((resolve, reject) => {
        dispatcher.stop();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
