import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const valid = {
  BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
  AUTH_JWT_SECRET: 'x'.repeat(32),
  AUTH_ISSUER: 'issuer',
  AUTH_AUDIENCE: 'audience',
};

function problems(env: Record<string, string | undefined>): string {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('loads a valid local configuration with defaults', () => {
    const config = loadConfig(valid);
    expect(config.auth.kind).toBe('secret');
    expect(config.queueName).toBe('billing-events');
    expect(config.enforcement).toEqual({ defaultMode: 'enforce', overrides: {} });
  });

  it('names every missing setting at once', () => {
    const message = problems({});
    for (const name of ['BILLING_STORAGE_CONNECTION', 'AUTH_ISSUER', 'AUTH_AUDIENCE', 'AUTH_JWKS_URL']) {
      expect(message).toContain(name);
    }
  });

  it('names each bad value and what is wrong with it', () => {
    const message = problems({
      ...valid,
      AUTH_JWT_SECRET: 'short',
      ENFORCEMENT_DEFAULT: 'strict',
      ENFORCEMENT_OVERRIDES: 'executions=monitor,teleport=off,ai_nodes=maybe',
      BILLING_TABLE_PREFIX: '1bad-prefix',
      MAX_BODY_BYTES: 'lots',
    });
    expect(message).toMatch(/AUTH_JWT_SECRET: must be at least 32 characters/);
    expect(message).toMatch(/ENFORCEMENT_DEFAULT/);
    expect(message).toMatch(/unknown feature "teleport"/);
    expect(message).toMatch(/"ai_nodes=maybe": mode must be one of/);
    expect(message).toMatch(/BILLING_TABLE_PREFIX/);
    expect(message).toMatch(/MAX_BODY_BYTES/);
  });

  it('uses the JWKS in production and refuses a shared secret beside it', () => {
    const jwks = { ...valid, AUTH_JWT_SECRET: undefined, AUTH_JWKS_URL: 'https://login.example.com/keys' };
    expect(loadConfig(jwks).auth.kind).toBe('jwks');
    expect(problems({ ...jwks, AUTH_JWT_SECRET: 'x'.repeat(32) })).toMatch(
      /must not be set together with AUTH_JWKS_URL/,
    );
  });

  it('accepts managed identity endpoints instead of a connection string', () => {
    const config = loadConfig({
      ...valid,
      BILLING_STORAGE_CONNECTION: undefined,
      BILLING_TABLE_ENDPOINT: 'https://acct.table.core.windows.net',
      BILLING_QUEUE_ENDPOINT: 'https://acct.queue.core.windows.net',
    });
    expect(config.storage.kind).toBe('managedIdentity');
  });

  it('parses enforcement overrides per feature', () => {
    const config = loadConfig({ ...valid, ENFORCEMENT_OVERRIDES: ' executions = monitor , ai_nodes=off ' });
    expect(config.enforcement.overrides).toEqual({ executions: 'monitor', ai_nodes: 'off' });
  });
});
