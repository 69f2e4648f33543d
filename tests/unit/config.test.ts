import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadConfig,
  reconcileScheduleFromEnv,
  retentionScheduleFromEnv,
  seatSyncScheduleFromEnv,
} from '../../src/config.js';

const valid = {
  BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
  AUTH_JWT_SECRET: 'x'.repeat(32),
  AUTH_ISSUER: 'issuer',
  AUTH_AUDIENCE: 'audience',
  STRIPE_SECRET_KEY: 'sk_test_abc',
  STRIPE_WEBHOOK_SECRET: 'whsec_abc',
  BILLING_CHECKOUT_SUCCESS_URL: 'https://app.example.com/billing?ok',
  BILLING_CHECKOUT_CANCEL_URL: 'https://app.example.com/billing?cancel',
  BILLING_PORTAL_RETURN_URL: 'https://app.example.com/billing',
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

  it('gives every storage call 10 s unless told otherwise, and refuses a timeout out of range', () => {
    expect(loadConfig(valid).storageTimeoutMs).toBe(10_000);
    expect(loadConfig({ ...valid, BILLING_STORAGE_TIMEOUT_MS: '2500' }).storageTimeoutMs).toBe(2_500);
    expect(problems({ ...valid, BILLING_STORAGE_TIMEOUT_MS: '10' })).toMatch(/BILLING_STORAGE_TIMEOUT_MS/);
    expect(problems({ ...valid, BILLING_STORAGE_TIMEOUT_MS: 'soon' })).toMatch(/BILLING_STORAGE_TIMEOUT_MS/);
  });

  it('names every missing setting at once', () => {
    const message = problems({});
    for (const name of [
      'BILLING_STORAGE_CONNECTION',
      'AUTH_ISSUER',
      'AUTH_AUDIENCE',
      'AUTH_JWKS_URL',
      'STRIPE_SECRET_KEY',
      'STRIPE_WEBHOOK_SECRET',
      'BILLING_CHECKOUT_SUCCESS_URL',
      'BILLING_CHECKOUT_CANCEL_URL',
      'BILLING_PORTAL_RETURN_URL',
    ]) {
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

  it('selects Service Bus with a connection string or a namespace, and says what is missing', () => {
    expect(
      loadConfig({
        ...valid,
        BILLING_QUEUE_TRANSPORT: 'servicebus',
        BILLING_SERVICEBUS: 'Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v',
      }).queueTransport.kind,
    ).toBe('serviceBus');
    expect(
      loadConfig({
        ...valid,
        BILLING_QUEUE_TRANSPORT: 'servicebus',
        BILLING_SERVICEBUS__fullyQualifiedNamespace: 'x.servicebus.windows.net',
      }).queueTransport,
    ).toEqual({ kind: 'serviceBusIdentity', fullyQualifiedNamespace: 'x.servicebus.windows.net' });
    expect(problems({ ...valid, BILLING_QUEUE_TRANSPORT: 'servicebus' })).toMatch(
      /BILLING_SERVICEBUS: required/,
    );
    expect(problems({ ...valid, BILLING_QUEUE_TRANSPORT: 'kafka' })).toMatch(/BILLING_QUEUE_TRANSPORT/);
  });

  it('turns telemetry on only with an Application Insights connection string', () => {
    expect(loadConfig(valid).telemetry).toBeUndefined();
    expect(loadConfig({ ...valid, APPLICATIONINSIGHTS_CONNECTION_STRING: ' ' }).telemetry).toBeUndefined();
    const connectionString =
      'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/';
    expect(
      loadConfig({ ...valid, APPLICATIONINSIGHTS_CONNECTION_STRING: connectionString }).telemetry,
    ).toEqual({
      connectionString,
    });
    expect(problems({ ...valid, APPLICATIONINSIGHTS_CONNECTION_STRING: 'https://example.com' })).toContain(
      'APPLICATIONINSIGHTS_CONNECTION_STRING: must be an Application Insights connection string',
    );
  });

  it('refuses keys that are not Stripe secrets and an inverted dunning policy', () => {
    const message = problems({
      ...valid,
      STRIPE_SECRET_KEY: 'pk_test_publishable',
      STRIPE_WEBHOOK_SECRET: 'secret',
      DUNNING_GRACE_AFTER_ATTEMPTS: '3',
      DUNNING_LOCK_AFTER_ATTEMPTS: '2',
    });
    expect(message).toMatch(/STRIPE_SECRET_KEY: must be a Stripe secret or restricted key/);
    expect(message).toMatch(/STRIPE_WEBHOOK_SECRET: must be a webhook signing secret/);
    // The policy is checked once the values themselves parse.
    expect(
      problems({ ...valid, DUNNING_GRACE_AFTER_ATTEMPTS: '3', DUNNING_LOCK_AFTER_ATTEMPTS: '2' }),
    ).toMatch(/DUNNING_LOCK_AFTER_ATTEMPTS: must be greater/);
  });

  it('keeps markers and ledger rows 400 days unless told otherwise, never under 90, pruning daily', () => {
    expect(loadConfig(valid).retention).toEqual({ days: 400, schedule: '0 45 2 * * *', maxRows: 200_000 });
    expect(loadConfig({ ...valid, BILLING_RETENTION_DAYS: '120' }).retention.days).toBe(120);
    expect(retentionScheduleFromEnv({})).toBe('0 45 2 * * *');
    expect(() => retentionScheduleFromEnv({ BILLING_RETENTION_SCHEDULE: '45 2 * * *' })).toThrow(ConfigError);
    const message = problems({ ...valid, BILLING_RETENTION_DAYS: '30', BILLING_RETENTION_MAX_ROWS: '10' });
    expect(message).toContain('BILLING_RETENTION_DAYS');
    expect(message).toContain('BILLING_RETENTION_MAX_ROWS');
  });

  it('schedules the reconciler every 15 minutes unless told otherwise, and refuses a malformed schedule', () => {
    expect(loadConfig(valid).reconcile).toEqual({
      schedule: '0 */15 * * * *',
      localIntervalSeconds: 900,
      maxItems: 500,
      overlapSeconds: 300,
      lookbackHours: 168,
    });
    expect(reconcileScheduleFromEnv({})).toBe('0 */15 * * * *');
    expect(reconcileScheduleFromEnv({ BILLING_RECONCILE_SCHEDULE: '0 0 * * * *' })).toBe('0 0 * * * *');
    // Five fields is the Unix form, which the Functions timer reads differently: refused, not guessed.
    expect(() => reconcileScheduleFromEnv({ BILLING_RECONCILE_SCHEDULE: '*/15 * * * *' })).toThrow(
      ConfigError,
    );
    const message = problems({
      ...valid,
      BILLING_RECONCILE_SCHEDULE: 'every 15 minutes',
      BILLING_RECONCILE_MAX_ITEMS: '0',
      BILLING_RECONCILE_LOOKBACK_HOURS: '1000',
    });
    expect(message).toContain('BILLING_RECONCILE_SCHEDULE');
    expect(message).toContain('BILLING_RECONCILE_MAX_ITEMS');
    expect(message).toContain('BILLING_RECONCILE_LOOKBACK_HOURS');
  });

  it('reads the seat sync settings, with defaults, and refuses what is out of range', () => {
    expect(loadConfig(valid).seatSync).toEqual({
      delaySeconds: 5,
      maxUpdatesPerHour: 20,
      leaseSeconds: 60,
      schedule: '0 30 * * * *',
      localIntervalSeconds: 3600,
    });
    expect(seatSyncScheduleFromEnv({})).toBe('0 30 * * * *');
    expect(() => seatSyncScheduleFromEnv({ BILLING_SEAT_SYNC_SCHEDULE: '0 * * * *' })).toThrow(ConfigError);
    const message = problems({
      ...valid,
      BILLING_SEAT_SYNC_MAX_UPDATES_PER_HOUR: '500',
      BILLING_SEAT_SYNC_DELAY_SECONDS: '-1',
    });
    expect(message).toContain('BILLING_SEAT_SYNC_MAX_UPDATES_PER_HOUR');
    expect(message).toContain('BILLING_SEAT_SYNC_DELAY_SECONDS');
  });
});
