import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import type { Clock } from '../../src/billing/clock.js';
import { createServices, type Services } from '../../src/composition.js';
import { type Config, loadConfig } from '../../src/config.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import { silenceFunctionsTestModeWarnings } from '../../src/local/quiet.js';
import { startLocalHost } from '../../src/local/server.js';
import { mintToken } from '../../src/local/token.js';

silenceFunctionsTestModeWarnings();

/** A table prefix no other test file uses, so files run in parallel on one Azurite. */
export function uniquePrefix(): string {
  return `t${randomBytes(6).toString('hex')}`;
}

export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    BILLING_STORAGE_CONNECTION: inject('azuriteConnection'),
    BILLING_TABLE_PREFIX: uniquePrefix(),
    AUTH_JWT_SECRET: LOCAL_DEFAULTS.AUTH_JWT_SECRET,
    AUTH_ISSUER: LOCAL_DEFAULTS.AUTH_ISSUER,
    AUTH_AUDIENCE: LOCAL_DEFAULTS.AUTH_AUDIENCE,
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

export interface CallOptions {
  readonly token?: string;
  /** An object is sent as JSON; a string is sent as is (for malformed bodies). */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

export interface TestHost {
  readonly url: string;
  readonly services: Services;
  call(method: string, path: string, options?: CallOptions): Promise<ApiResponse>;
  /** A token with the `service` role, as the platform's backends use. */
  serviceToken(): Promise<string>;
  close(): Promise<void>;
}

/** The local host on a free port over this run's Azurite, with its own tables. */
export async function startTestHost(
  options: { readonly env?: Record<string, string>; readonly clock?: Clock } = {},
): Promise<TestHost> {
  const { routes } = await import('../../src/functions/routes.js');
  const services = createServices(testConfig(options.env), options.clock ? { clock: options.clock } : {});
  const host = await startLocalHost({ services, routes, port: 0, log: () => undefined });
  return {
    url: host.url,
    services,
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
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    serviceToken: () => token({ sub: 'platform', roles: ['service'] }),
    close: () => host.close(),
  };
}
