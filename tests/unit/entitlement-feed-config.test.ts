import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DEFAULT_FEED_SWEEP_SCHEDULE,
  feedSweepScheduleFromEnv,
  loadConfig,
} from '../../src/config.js';
import { baseTestEnv } from '../support/env.js';

const env = (extra: Record<string, string> = {}) => ({
  BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
  ...baseTestEnv,
  ...extra,
});

function problems(extra: Record<string, string>): string {
  try {
    loadConfig(env(extra));
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('config: the entitlement feed', () => {
  it('defaults to a Storage Queue and no webhook', () => {
    expect(loadConfig(env()).feed).toEqual({
      transport: { kind: 'storage', queueName: 'entitlement-changes' },
      webhook: undefined,
      sweepSchedule: DEFAULT_FEED_SWEEP_SCHEDULE,
      localSweepIntervalSeconds: 60,
    });
    expect(feedSweepScheduleFromEnv({})).toBe(DEFAULT_FEED_SWEEP_SCHEDULE);
  });

  it('takes a Service Bus topic by connection string or by namespace', () => {
    expect(
      loadConfig(
        env({
          ENTITLEMENT_FEED_TRANSPORT: 'servicebus',
          ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace: 'sb.servicebus.windows.net',
        }),
      ).feed.transport,
    ).toEqual({
      kind: 'serviceBusIdentity',
      fullyQualifiedNamespace: 'sb.servicebus.windows.net',
      topic: 'entitlement-changes',
    });
    expect(problems({ ENTITLEMENT_FEED_TRANSPORT: 'servicebus' })).toMatch(
      /ENTITLEMENT_FEED_SERVICEBUS: required/,
    );
  });

  it('takes a webhook only with its secret, and names every problem', () => {
    const config = loadConfig(
      env({
        ENTITLEMENT_WEBHOOK_URL: 'https://platform.example.com/hooks',
        ENTITLEMENT_WEBHOOK_SECRET: 's'.repeat(32),
      }),
    );
    expect(config.feed.webhook).toMatchObject({
      secret: 's'.repeat(32),
      maxAttempts: 10,
      retry: { baseSeconds: 5, maxSeconds: 3600 },
    });
    expect(problems({ ENTITLEMENT_WEBHOOK_URL: 'https://platform.example.com/hooks' })).toMatch(
      /ENTITLEMENT_WEBHOOK_SECRET: required/,
    );
    expect(problems({ ENTITLEMENT_WEBHOOK_SECRET: 's'.repeat(32) })).toMatch(
      /ENTITLEMENT_WEBHOOK_URL: required/,
    );
    expect(problems({ ENTITLEMENT_WEBHOOK_URL: 'not a url', ENTITLEMENT_WEBHOOK_SECRET: 'short' })).toMatch(
      /ENTITLEMENT_WEBHOOK_URL[\s\S]*ENTITLEMENT_WEBHOOK_SECRET: must be at least 32 characters/,
    );
  });
});
