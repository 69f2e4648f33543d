import { randomBytes } from 'node:crypto';
import { expect, inject } from 'vitest';
import { STRIPE_API_VERSION } from '../../src/adapters/stripe/gateway.js';
import type { RevertHandler } from '../../src/billing/audit/entry.js';
import { catalog } from '../../src/billing/catalog.js';
import type { Clock } from '../../src/billing/clock.js';
import { createServices, type Services } from '../../src/composition.js';
import { type Config, loadConfig } from '../../src/config.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import { type QueueWorker, startQueueWorker } from '../../src/local/queue-worker.js';
import { silenceFunctionsTestModeWarnings } from '../../src/local/quiet.js';
import { startLocalHost } from '../../src/local/server.js';
import { sandboxPrices } from '../../src/local/stripe-seed.js';
import { mintToken } from '../../src/local/token.js';
import { type StripeSandbox, startStripeSandbox } from '../../tools/stripe-sandbox/index.js';
import { baseTestEnv } from './env.js';
import { assertDocumented } from './openapi.js';

silenceFunctionsTestModeWarnings();

/** A table prefix no other test file uses, so files run in parallel on one Azurite. */
export function uniquePrefix(): string {
  return `t${randomBytes(6).toString('hex')}`;
}

export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  const prefix = uniquePrefix();
  return {
    BILLING_STORAGE_CONNECTION: inject('azuriteConnection'),
    BILLING_TABLE_PREFIX: prefix,
    BILLING_QUEUE_NAME: `q-${prefix}`,
    ...baseTestEnv,
    BILLING_QUEUE_MAX_DELIVERIES: '3',
    // Redeliveries of transient failures within seconds, not minutes, so `settle()` stays quick.
    BILLING_EVENT_RETRY_BASE_SECONDS: '1',
    BILLING_EVENT_RETRY_MAX_SECONDS: '2',
    BILLING_EVENT_MAX_ATTEMPTS: '5',
    ...overrides,
  };
}

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(overrides));
}

export interface TokenRequest {
  readonly sub: string;
  readonly org?: string;
  readonly roles?: readonly string[];
  readonly ttlSeconds?: number;
}

export const token = (request: TokenRequest) =>
  mintToken({
    ...request,
    secret: LOCAL_DEFAULTS.AUTH_JWT_SECRET,
    issuer: LOCAL_DEFAULTS.AUTH_ISSUER,
    audience: LOCAL_DEFAULTS.AUTH_AUDIENCE,
  });

export interface ApiResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
  readonly text: string;
}

/** The answer is problem+json with this status and code. */
export function expectProblem(response: ApiResponse, status: number, code: string): void {
  expect(response.status, response.text).toBe(status);
  expect(response.body).toMatchObject({ status, code });
}

export interface CallOptions {
  readonly token?: string;
  /** An object is sent as JSON; a string is sent as is (for malformed bodies). */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Skip the OpenAPI check, for a probe of what the document deliberately leaves out. */
  readonly undocumented?: true;
}

export interface SandboxAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** A JSON call to a Stripe sandbox, for tests that drive it as a customer or an operator would. */
export async function callSandbox(
  sandbox: StripeSandbox | undefined,
  method: string,
  path: string,
  body?: unknown,
): Promise<SandboxAnswer> {
  if (!sandbox) throw new Error('this test host has no Stripe sandbox');
  const response = await fetch(`${sandbox.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function sandboxOk(
  sandbox: StripeSandbox | undefined,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const answer = await callSandbox(sandbox, method, path, body);
  if (answer.status >= 300) {
    throw new Error(`sandbox ${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  }
  return answer.body;
}

export interface TestHost {
  readonly url: string;
  readonly services: Services;
  /** The local Stripe sandbox this host talks to (when started with `stripe: true`, the default). */
  readonly sandbox: StripeSandbox | undefined;
  readonly worker: QueueWorker | undefined;
  /** Waits until webhooks are delivered and the queue is drained. */
  settle(): Promise<void>;
  /**
   * Reads until `accept` holds, settling between reads, for outcomes that arrive later on purpose (a
   * delayed seat sync, a retried delivery): fails after `ms` with the last value read.
   */
  eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, ms?: number): Promise<T>;
  /** A JSON call to the sandbox (its control API, a hosted page, or a Stripe route), as it answered. */
  sandboxCall(method: string, path: string, body?: unknown): Promise<SandboxAnswer>;
  /** The same, failing the test (with the sandbox's own message) unless it answered 2xx. */
  sandboxOk(method: string, path: string, body?: unknown): Promise<Record<string, unknown>>;
  call(method: string, path: string, options?: CallOptions): Promise<ApiResponse>;
  /** A token with the `service` role, as the platform's backends use. */
  serviceToken(): Promise<string>;
  close(): Promise<void>;
}

/** The local host on a free port over this run's Azurite, with its own tables. */
export async function startTestHost(
  options: {
    readonly env?: Record<string, string>;
    readonly clock?: Clock;
    /** Start a Stripe sandbox and point the host at it. @default true */
    readonly stripe?: boolean;
    /** Run the queue worker (the processor). @default true */
    readonly worker?: boolean;
    /** Let the sandbox deliver webhooks by itself. @default true */
    readonly deliverWebhooks?: boolean;
    /** Share a sandbox another host started (its webhooks stay pointed where they were). */
    readonly sandbox?: StripeSandbox;
    /** Revert handlers registered beside the built-in ones (composition's `revertHandlers`). */
    readonly revertHandlers?: readonly RevertHandler[];
  } = {},
): Promise<TestHost> {
  const { routes } = await import('../../src/functions/routes.js');
  const ownSandbox = options.stripe !== false && options.sandbox === undefined;
  const sandbox =
    options.sandbox ??
    (!ownSandbox
      ? undefined
      : await startStripeSandbox({
          port: 0,
          webhookSecret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
          apiVersion: STRIPE_API_VERSION,
          prices: sandboxPrices(catalog),
          deliverWebhooks: options.deliverWebhooks ?? true,
          webhookRetry: { attempts: 5, baseDelayMs: 50 },
        }));
  const env = {
    ...(sandbox ? { STRIPE_API_BASE: sandbox.url } : {}),
    ...options.env,
  };
  const config = testConfig(env);
  const services = createServices(config, {
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.revertHandlers ? { revertHandlers: options.revertHandlers } : {}),
  });
  const host = await startLocalHost({ services, routes, port: 0, log: () => undefined });
  if (ownSandbox) sandbox?.setWebhookUrl(`${host.url}/api/webhooks/stripe`);
  const worker =
    options.worker === false
      ? undefined
      : await startQueueWorker({
          services,
          connectionString: inject('azuriteConnection'),
          visibilityTimeoutSeconds: 1,
          pollMs: 50,
          log: () => undefined,
        });
  const settle = async () => {
    await sandbox?.idle();
    await worker?.drained();
  };
  return {
    url: host.url,
    services,
    sandbox,
    worker,
    settle,
    async eventually(read, accept, ms = 20_000) {
      const until = Date.now() + ms;
      let last = await read();
      while (!accept(last)) {
        if (Date.now() > until) throw new Error(`not reached in ${ms} ms; last: ${JSON.stringify(last)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await settle();
        last = await read();
      }
      return last;
    },
    sandboxCall: (method, path, body) => callSandbox(sandbox, method, path, body),
    sandboxOk: (method, path, body) => sandboxOk(sandbox, method, path, body),
    async call(method, path, callOptions = {}) {
      const headers: Record<string, string> = { ...callOptions.headers };
      if (callOptions.token) headers.authorization = `Bearer ${callOptions.token}`;
      let body: string | undefined;
      if (callOptions.body !== undefined) {
        body = typeof callOptions.body === 'string' ? callOptions.body : JSON.stringify(callOptions.body);
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(`${host.url}${path}`, { method, headers, body });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      // Every answer an end-to-end test receives must be one docs/openapi.yaml describes.
      if (!callOptions.undocumented) {
        assertDocumented({
          method,
          path,
          status: response.status,
          contentType: response.headers.get('content-type'),
          body: parsed,
        });
      }
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    serviceToken: () => token({ sub: 'platform', roles: ['service'] }),
    async close() {
      await worker?.stop();
      await host.close();
      if (ownSandbox) await sandbox?.stop();
    },
  };
}
