import { z } from 'zod';
import { FEATURE_NAMES, type FeatureName } from './billing/catalog.js';
import { ENFORCEMENT_MODES, type EnforcementMode, type EnforcementPolicy } from './billing/enforcement.js';

/**
 * Settings, parsed once from the environment with zod. Every setting is listed in
 * `local.settings.sample.json` and in the README's configuration table. A bad or missing setting stops
 * start-up with one message naming each setting and what is wrong with it.
 */
export interface Config {
  readonly storage:
    | { readonly kind: 'connectionString'; readonly connectionString: string }
    | { readonly kind: 'managedIdentity'; readonly tableEndpoint: string; readonly queueEndpoint: string };
  /**
   * How long one storage call (a table read or write, a queue send) may take in all, the SDK's own
   * retries included, before it fails as unavailable (503 with Retry-After). @default 10000
   */
  readonly storageTimeoutMs: number;
  /** Prepended to every table name, so several environments (or test runs) can share one account. */
  readonly tablePrefix: string;
  readonly queueName: string;
  readonly auth:
    | { readonly kind: 'jwks'; readonly jwksUrl: URL; readonly issuer: string; readonly audience: string }
    | {
        readonly kind: 'secret';
        readonly secret: Uint8Array;
        readonly issuer: string;
        readonly audience: string;
      };
  readonly enforcement: EnforcementPolicy;
  readonly maxBodyBytes: number;
  readonly stripe: {
    readonly secretKey: string;
    readonly webhookSecret: string;
    /** Where the SDK sends requests: unset for real Stripe, the local sandbox in development. */
    readonly apiBase: URL | undefined;
    readonly webhookToleranceSeconds: number;
    /** Webhook bodies can be far larger than API requests (an invoice with many lines). */
    readonly webhookMaxBytes: number;
    readonly maxNetworkRetries: number;
  };
  /** Fixed redirect targets: never taken from a request, so checkout cannot be turned into an open redirect. */
  readonly urls: {
    readonly checkoutSuccess: string;
    readonly checkoutCancel: string;
    readonly portalReturn: string;
  };
  readonly queueTransport:
    | { readonly kind: 'storage' }
    | { readonly kind: 'serviceBus'; readonly connectionString: string }
    | { readonly kind: 'serviceBusIdentity'; readonly fullyQualifiedNamespace: string };
  /** Deliveries of one queue message before it goes to the poison/dead-letter queue. */
  readonly maxDeliveries: number;
  /**
   * Redelivery of events that failed transiently (Stripe or storage down): the processor re-sends them
   * itself with growing delays, so an outage of hours costs no event (`src/billing/failures.ts`).
   */
  readonly eventRetry: {
    /** Transient failures of one event before it is poisoned. */
    readonly maxAttempts: number;
    /** Delay before the first redelivery; it doubles with each attempt (jittered). */
    readonly baseSeconds: number;
    /** No redelivery waits longer than this. */
    readonly maxSeconds: number;
  };
  /** Failed renewal attempts (Stripe's invoice attempt_count) after which access becomes grace, then locked. */
  readonly dunning: { readonly graceAfterAttempts: number; readonly lockAfterAttempts: number };
  /** The Stripe reconciler (`stripeReconcile` timer, `POST /api/ops/reconcile`). */
  readonly reconcile: ReconcileSettings;
  /** Pruning of old idempotency markers and ledger rows (`retentionPrune` timer; `src/billing/retention/`). */
  readonly retention: RetentionSettings;
  /** Per-seat subscriptions following membership (`src/billing/seat-sync.ts`, the `seatSync` timer). */
  readonly seatSync: SeatSyncSettings;
  /** The entitlement change feed (`src/billing/feed/`). */
  readonly feed: FeedSettings;
  /** OpenTelemetry to Azure Monitor when set; no telemetry SDK at all when not. */
  readonly telemetry: { readonly connectionString: string } | undefined;
}

export interface FeedSettings {
  /** Where `entitlements.changed` is published: a Storage Queue (default) or a Service Bus topic. */
  readonly transport:
    | { readonly kind: 'storage'; readonly queueName: string }
    | { readonly kind: 'serviceBus'; readonly connectionString: string; readonly topic: string }
    | {
        readonly kind: 'serviceBusIdentity';
        readonly fullyQualifiedNamespace: string;
        readonly topic: string;
      };
  /** Signed HTTP deliveries to the platform; off unless a URL is set. */
  readonly webhook:
    | {
        readonly url: URL;
        readonly secret: string;
        readonly maxAttempts: number;
        readonly retry: { readonly baseSeconds: number; readonly maxSeconds: number };
      }
    | undefined;
  /** NCRONTAB of the `entitlementFeedSweep` timer. @default every 5 minutes */
  readonly sweepSchedule: string;
  /** How often the local host runs the sweep. @default 60 */
  readonly localSweepIntervalSeconds: number;
}

export interface SeatSyncSettings {
  /** How long after a membership change its sync runs, so a burst coalesces into one Stripe update. @default 5 */
  readonly delaySeconds: number;
  /** Stripe quantity updates per subscription per rolling hour; more wait (Stripe allows 200). @default 20 */
  readonly maxUpdatesPerHour: number;
  /** How long one sync holds an owner's sync row while it talks to Stripe. @default 60 */
  readonly leaseSeconds: number;
  /** NCRONTAB of the `seatSync` timer (drift repair). @default hourly */
  readonly schedule: string;
  /** How often the local host runs it (the Functions host follows `schedule`). @default 3600 */
  readonly localIntervalSeconds: number;
}

export interface ReconcileSettings {
  /** NCRONTAB (six fields, seconds first) of the `stripeReconcile` timer. @default every 15 minutes */
  readonly schedule: string;
  /** How often the local host runs it (the Functions host follows `schedule`). @default 900 */
  readonly localIntervalSeconds: number;
  /** Customers, live owners and credit sessions each, at most, per run; the next run continues. @default 500 */
  readonly maxItems: number;
  /** How far before the watermark each run looks again, for events Stripe listed late. @default 300 */
  readonly overlapSeconds: number;
  /** How far back the first run, and a run for one owner, look. @default 168 (7 days) */
  readonly lookbackHours: number;
}

export interface RetentionSettings {
  /**
   * Days consume markers and ledger rows are kept (grant markers at least 730: see
   * `src/billing/retention/policy.ts`). At least 90, far past any client's retry. @default 400
   */
  readonly days: number;
  /** NCRONTAB of the `retentionPrune` timer. @default daily at 02:45 UTC */
  readonly schedule: string;
  /** Rows one run reads at most; the next run continues. @default 200000 */
  readonly maxRows: number;
}

/** Daily at 02:45 UTC, away from the rollover (00:15) so the two do not compete for the table. */
export const DEFAULT_RETENTION_SCHEDULE = '0 45 2 * * *';

/** Every 15 minutes, on the quarter hour. */
export const DEFAULT_RECONCILE_SCHEDULE = '0 */15 * * * *';

/** Every five minutes: how late, at worst, an event whose drain was lost after its commit is published. */
export const DEFAULT_FEED_SWEEP_SCHEDULE = '30 */5 * * * *';

/** Hourly, on the half hour (away from the reconciler's quarter hours). */
export const DEFAULT_SEAT_SYNC_SCHEDULE = '0 30 * * * *';

/**
 * Hourly at five past: issues enterprise contract invoices for periods that have begun, and re-reads
 * their open invoices (`contractInvoicing`). A period's invoice goes out within the hour of its start.
 */
export const DEFAULT_CONTRACT_INVOICING_SCHEDULE = '0 5 * * * *';

/**
 * A six-field NCRONTAB expression as the Functions timer takes it (`{second} {minute} {hour} {day}
 * {month} {day-of-week}`); checked here so a typo stops start-up instead of silently never firing.
 */
const ncrontab = z
  .string()
  .regex(
    /^[\d*/,A-Za-z-]+(?:\s+[\d*/,A-Za-z-]+){5}$/,
    'six NCRONTAB fields, seconds first (e.g. "0 */15 * * * *")',
  );

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const optional = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** An optional whole-number setting within `[min, max]`. */
const wholeNumber = (min: number, max: number) =>
  optional.pipe(z.coerce.number<string | undefined>().int().min(min).max(max).optional());

const overridesSchema = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const overrides: Partial<Record<FeatureName, EnforcementMode>> = {};
    for (const pair of (value ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)) {
      const [feature, mode] = pair.split('=').map((s) => s.trim());
      if (!(FEATURE_NAMES as readonly string[]).includes(feature ?? '')) {
        ctx.addIssue({
          code: 'custom',
          message: `unknown feature "${feature}" (one of ${FEATURE_NAMES.join(', ')})`,
        });
      } else if (!(ENFORCEMENT_MODES as readonly string[]).includes(mode ?? '')) {
        ctx.addIssue({
          code: 'custom',
          message: `"${pair}": mode must be one of ${ENFORCEMENT_MODES.join(', ')}`,
        });
      } else {
        overrides[feature as FeatureName] = mode as EnforcementMode;
      }
    }
    return overrides;
  });

const envSchema = z.object({
  BILLING_STORAGE_CONNECTION: optional,
  BILLING_TABLE_ENDPOINT: optional.pipe(z.url().optional()),
  BILLING_QUEUE_ENDPOINT: optional.pipe(z.url().optional()),
  BILLING_STORAGE_TIMEOUT_MS: wholeNumber(100, 120_000),
  BILLING_TABLE_PREFIX: optional.pipe(
    z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9]{0,29}$/, 'letters and digits only, starting with a letter, at most 30')
      .optional(),
  ),
  BILLING_QUEUE_NAME: optional.pipe(
    z
      .string()
      .regex(
        /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/,
        'a valid queue name: 3-63 lowercase letters, digits, "-"',
      )
      .optional(),
  ),
  AUTH_JWT_SECRET: optional.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  AUTH_JWKS_URL: optional.pipe(z.url().optional()),
  AUTH_ISSUER: optional,
  AUTH_AUDIENCE: optional,
  ENFORCEMENT_DEFAULT: optional.pipe(z.enum(ENFORCEMENT_MODES).optional()),
  ENFORCEMENT_OVERRIDES: overridesSchema,
  STRIPE_SECRET_KEY: optional.pipe(
    z
      .string()
      .regex(/^(sk|rk)_(test|live)_\w+$/, 'must be a Stripe secret or restricted key (sk_… or rk_…)')
      .optional(),
  ),
  STRIPE_WEBHOOK_SECRET: optional.pipe(
    z
      .string()
      .regex(/^whsec_\w+$/, 'must be a webhook signing secret (whsec_…)')
      .optional(),
  ),
  STRIPE_API_BASE: optional.pipe(z.url().optional()),
  STRIPE_WEBHOOK_TOLERANCE_SECONDS: wholeNumber(1, 3600),
  STRIPE_WEBHOOK_MAX_BYTES: wholeNumber(64 * 1024, 1024 * 1024),
  STRIPE_MAX_NETWORK_RETRIES: wholeNumber(0, 10),
  BILLING_CHECKOUT_SUCCESS_URL: optional.pipe(z.url().optional()),
  BILLING_CHECKOUT_CANCEL_URL: optional.pipe(z.url().optional()),
  BILLING_PORTAL_RETURN_URL: optional.pipe(z.url().optional()),
  BILLING_QUEUE_TRANSPORT: optional.pipe(z.enum(['storage', 'servicebus']).optional()),
  BILLING_SERVICEBUS: optional,
  BILLING_SERVICEBUS__fullyQualifiedNamespace: optional,
  BILLING_QUEUE_MAX_DELIVERIES: wholeNumber(1, 100),
  BILLING_EVENT_MAX_ATTEMPTS: wholeNumber(1, 100),
  BILLING_EVENT_RETRY_BASE_SECONDS: wholeNumber(1, 3600),
  // Storage Queue holds an invisible message for at most 7 days; a day is already far past any outage.
  BILLING_EVENT_RETRY_MAX_SECONDS: wholeNumber(1, 24 * 3600),
  DUNNING_GRACE_AFTER_ATTEMPTS: wholeNumber(1, 20),
  DUNNING_LOCK_AFTER_ATTEMPTS: wholeNumber(1, 20),
  BILLING_RECONCILE_SCHEDULE: optional.pipe(ncrontab.optional()),
  BILLING_RECONCILE_INTERVAL_SECONDS: wholeNumber(5, 86_400),
  BILLING_RECONCILE_MAX_ITEMS: wholeNumber(1, 10_000),
  BILLING_RECONCILE_OVERLAP_SECONDS: wholeNumber(0, 3_600),
  // Stripe keeps events for 30 days: further back there is nothing to list.
  BILLING_RECONCILE_LOOKBACK_HOURS: wholeNumber(1, 720),
  // The floor keeps consume markers far past any retry (see src/billing/retention/policy.ts).
  BILLING_RETENTION_DAYS: wholeNumber(90, 3650),
  BILLING_RETENTION_SCHEDULE: optional.pipe(ncrontab.optional()),
  BILLING_RETENTION_MAX_ROWS: wholeNumber(1000, 10_000_000),
  BILLING_SEAT_SYNC_DELAY_SECONDS: wholeNumber(0, 300),
  BILLING_SEAT_SYNC_MAX_UPDATES_PER_HOUR: wholeNumber(1, 200),
  BILLING_SEAT_SYNC_LEASE_SECONDS: wholeNumber(5, 600),
  BILLING_SEAT_SYNC_SCHEDULE: optional.pipe(ncrontab.optional()),
  BILLING_SEAT_SYNC_INTERVAL_SECONDS: wholeNumber(5, 86_400),
  BILLING_CONTRACT_INVOICING_SCHEDULE: optional.pipe(ncrontab.optional()),
  ENTITLEMENT_FEED_TRANSPORT: optional.pipe(z.enum(['storage', 'servicebus']).optional()),
  ENTITLEMENT_FEED_QUEUE_NAME: optional.pipe(
    z
      .string()
      .regex(
        /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/,
        'a valid queue name: 3-63 lowercase letters, digits, "-"',
      )
      .optional(),
  ),
  ENTITLEMENT_FEED_SERVICEBUS: optional,
  ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace: optional,
  ENTITLEMENT_FEED_TOPIC: optional.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,259}$/, 'a Service Bus topic name')
      .optional(),
  ),
  ENTITLEMENT_FEED_SWEEP_SCHEDULE: optional.pipe(ncrontab.optional()),
  ENTITLEMENT_FEED_SWEEP_INTERVAL_SECONDS: wholeNumber(1, 86_400),
  ENTITLEMENT_WEBHOOK_URL: optional.pipe(z.url().optional()),
  ENTITLEMENT_WEBHOOK_SECRET: optional.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  ENTITLEMENT_WEBHOOK_MAX_ATTEMPTS: wholeNumber(1, 50),
  ENTITLEMENT_WEBHOOK_RETRY_BASE_SECONDS: wholeNumber(1, 3600),
  ENTITLEMENT_WEBHOOK_RETRY_MAX_SECONDS: wholeNumber(1, 24 * 3600),
  APPLICATIONINSIGHTS_CONNECTION_STRING: optional.pipe(
    z
      .string()
      .regex(/(^|;)\s*InstrumentationKey=[^;]+/i, 'must be an Application Insights connection string')
      .optional(),
  ),
  MAX_BODY_BYTES: wholeNumber(1024, 10 * 1024 * 1024),
});

/**
 * Every setting name the app reads: the keys of the environment schema. Which of them are required is
 * decided by `loadConfig` (several come in either-or pairs), so checks of a deployment's settings load
 * them with `loadConfig` instead of keeping a second list; this list lets them find settings nothing reads.
 */
export const SETTING_NAMES: readonly string[] = Object.keys(envSchema.shape);

/** @throws ConfigError listing every problem, not just the first */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  const e = parsed.data;
  const problems: string[] = [];

  let storage: Config['storage'] | undefined;
  if (e.BILLING_STORAGE_CONNECTION) {
    storage = { kind: 'connectionString', connectionString: e.BILLING_STORAGE_CONNECTION };
  } else if (e.BILLING_TABLE_ENDPOINT && e.BILLING_QUEUE_ENDPOINT) {
    storage = {
      kind: 'managedIdentity',
      tableEndpoint: e.BILLING_TABLE_ENDPOINT,
      queueEndpoint: e.BILLING_QUEUE_ENDPOINT,
    };
  } else {
    problems.push(
      'BILLING_STORAGE_CONNECTION: required (a storage connection string), unless BILLING_TABLE_ENDPOINT and BILLING_QUEUE_ENDPOINT are both set for managed identity',
    );
  }

  if (!e.AUTH_ISSUER) problems.push('AUTH_ISSUER: required (the expected "iss" of access tokens)');
  if (!e.AUTH_AUDIENCE) problems.push('AUTH_AUDIENCE: required (the expected "aud" of access tokens)');
  if (e.AUTH_JWKS_URL && e.AUTH_JWT_SECRET) {
    problems.push(
      'AUTH_JWT_SECRET: must not be set together with AUTH_JWKS_URL (choose one way to verify tokens)',
    );
  } else if (!e.AUTH_JWKS_URL && !e.AUTH_JWT_SECRET) {
    problems.push('AUTH_JWKS_URL: required in production (or AUTH_JWT_SECRET for local HS256 tokens)');
  }

  if (!e.STRIPE_SECRET_KEY) problems.push('STRIPE_SECRET_KEY: required (sk_… or rk_…)');
  if (!e.STRIPE_WEBHOOK_SECRET)
    problems.push('STRIPE_WEBHOOK_SECRET: required (whsec_…, from the webhook endpoint)');
  if (!e.BILLING_CHECKOUT_SUCCESS_URL)
    problems.push('BILLING_CHECKOUT_SUCCESS_URL: required (where checkout returns after paying)');
  if (!e.BILLING_CHECKOUT_CANCEL_URL)
    problems.push('BILLING_CHECKOUT_CANCEL_URL: required (where checkout returns when abandoned)');
  if (!e.BILLING_PORTAL_RETURN_URL)
    problems.push('BILLING_PORTAL_RETURN_URL: required (where the billing portal returns)');

  let queueTransport: Config['queueTransport'] = { kind: 'storage' };
  if (e.BILLING_QUEUE_TRANSPORT === 'servicebus') {
    if (e.BILLING_SERVICEBUS) queueTransport = { kind: 'serviceBus', connectionString: e.BILLING_SERVICEBUS };
    else if (e.BILLING_SERVICEBUS__fullyQualifiedNamespace) {
      queueTransport = {
        kind: 'serviceBusIdentity',
        fullyQualifiedNamespace: e.BILLING_SERVICEBUS__fullyQualifiedNamespace,
      };
    } else {
      problems.push(
        'BILLING_SERVICEBUS: required with BILLING_QUEUE_TRANSPORT=servicebus (a connection string), or BILLING_SERVICEBUS__fullyQualifiedNamespace for managed identity',
      );
    }
  }
  const graceAfterAttempts = e.DUNNING_GRACE_AFTER_ATTEMPTS ?? 2;
  const lockAfterAttempts = e.DUNNING_LOCK_AFTER_ATTEMPTS ?? 4;
  if (lockAfterAttempts <= graceAfterAttempts) {
    problems.push('DUNNING_LOCK_AFTER_ATTEMPTS: must be greater than DUNNING_GRACE_AFTER_ATTEMPTS');
  }
  // 20 attempts from 5 s doubling to 30 min: about 6 hours of redelivery (jitter takes up to a quarter off).
  const eventRetry = {
    maxAttempts: e.BILLING_EVENT_MAX_ATTEMPTS ?? 20,
    baseSeconds: e.BILLING_EVENT_RETRY_BASE_SECONDS ?? 5,
    maxSeconds: e.BILLING_EVENT_RETRY_MAX_SECONDS ?? 30 * 60,
  };
  if (eventRetry.maxSeconds < eventRetry.baseSeconds) {
    problems.push('BILLING_EVENT_RETRY_MAX_SECONDS: must be at least BILLING_EVENT_RETRY_BASE_SECONDS');
  }

  const feed = feedSettings(e, problems);

  if (
    problems.length > 0 ||
    !feed ||
    !storage ||
    !e.AUTH_ISSUER ||
    !e.AUTH_AUDIENCE ||
    !e.STRIPE_SECRET_KEY ||
    !e.STRIPE_WEBHOOK_SECRET ||
    !e.BILLING_CHECKOUT_SUCCESS_URL ||
    !e.BILLING_CHECKOUT_CANCEL_URL ||
    !e.BILLING_PORTAL_RETURN_URL
  ) {
    throw new ConfigError(problems);
  }

  return {
    storage,
    storageTimeoutMs: e.BILLING_STORAGE_TIMEOUT_MS ?? 10_000,
    tablePrefix: e.BILLING_TABLE_PREFIX ?? '',
    queueName: e.BILLING_QUEUE_NAME ?? 'billing-events',
    auth: e.AUTH_JWKS_URL
      ? { kind: 'jwks', jwksUrl: new URL(e.AUTH_JWKS_URL), issuer: e.AUTH_ISSUER, audience: e.AUTH_AUDIENCE }
      : {
          kind: 'secret',
          secret: new TextEncoder().encode(e.AUTH_JWT_SECRET ?? ''),
          issuer: e.AUTH_ISSUER,
          audience: e.AUTH_AUDIENCE,
        },
    enforcement: { defaultMode: e.ENFORCEMENT_DEFAULT ?? 'enforce', overrides: e.ENFORCEMENT_OVERRIDES },
    maxBodyBytes: e.MAX_BODY_BYTES ?? 64 * 1024,
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET,
      apiBase: e.STRIPE_API_BASE ? new URL(e.STRIPE_API_BASE) : undefined,
      webhookToleranceSeconds: e.STRIPE_WEBHOOK_TOLERANCE_SECONDS ?? 300,
      webhookMaxBytes: e.STRIPE_WEBHOOK_MAX_BYTES ?? 512 * 1024,
      maxNetworkRetries: e.STRIPE_MAX_NETWORK_RETRIES ?? 2,
    },
    urls: {
      checkoutSuccess: e.BILLING_CHECKOUT_SUCCESS_URL,
      checkoutCancel: e.BILLING_CHECKOUT_CANCEL_URL,
      portalReturn: e.BILLING_PORTAL_RETURN_URL,
    },
    queueTransport,
    maxDeliveries: e.BILLING_QUEUE_MAX_DELIVERIES ?? 5,
    eventRetry,
    dunning: { graceAfterAttempts, lockAfterAttempts },
    reconcile: {
      schedule: e.BILLING_RECONCILE_SCHEDULE ?? DEFAULT_RECONCILE_SCHEDULE,
      localIntervalSeconds: e.BILLING_RECONCILE_INTERVAL_SECONDS ?? 900,
      maxItems: e.BILLING_RECONCILE_MAX_ITEMS ?? 500,
      overlapSeconds: e.BILLING_RECONCILE_OVERLAP_SECONDS ?? 300,
      lookbackHours: e.BILLING_RECONCILE_LOOKBACK_HOURS ?? 168,
    },
    retention: {
      days: e.BILLING_RETENTION_DAYS ?? 400,
      schedule: e.BILLING_RETENTION_SCHEDULE ?? DEFAULT_RETENTION_SCHEDULE,
      maxRows: e.BILLING_RETENTION_MAX_ROWS ?? 200_000,
    },
    seatSync: {
      delaySeconds: e.BILLING_SEAT_SYNC_DELAY_SECONDS ?? 5,
      maxUpdatesPerHour: e.BILLING_SEAT_SYNC_MAX_UPDATES_PER_HOUR ?? 20,
      leaseSeconds: e.BILLING_SEAT_SYNC_LEASE_SECONDS ?? 60,
      schedule: e.BILLING_SEAT_SYNC_SCHEDULE ?? DEFAULT_SEAT_SYNC_SCHEDULE,
      localIntervalSeconds: e.BILLING_SEAT_SYNC_INTERVAL_SECONDS ?? 3600,
    },
    feed,
    telemetry: e.APPLICATIONINSIGHTS_CONNECTION_STRING
      ? { connectionString: e.APPLICATIONINSIGHTS_CONNECTION_STRING }
      : undefined,
  };
}

function feedSettings(e: z.infer<typeof envSchema>, problems: string[]): FeedSettings | undefined {
  let transport: FeedSettings['transport'] | undefined;
  const topic = e.ENTITLEMENT_FEED_TOPIC ?? 'entitlement-changes';
  if (e.ENTITLEMENT_FEED_TRANSPORT === 'servicebus') {
    if (e.ENTITLEMENT_FEED_SERVICEBUS)
      transport = { kind: 'serviceBus', connectionString: e.ENTITLEMENT_FEED_SERVICEBUS, topic };
    else if (e.ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace)
      transport = {
        kind: 'serviceBusIdentity',
        fullyQualifiedNamespace: e.ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace,
        topic,
      };
    else
      problems.push(
        'ENTITLEMENT_FEED_SERVICEBUS: required with ENTITLEMENT_FEED_TRANSPORT=servicebus (a connection string), or ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace for managed identity',
      );
  } else transport = { kind: 'storage', queueName: e.ENTITLEMENT_FEED_QUEUE_NAME ?? 'entitlement-changes' };

  let webhook: FeedSettings['webhook'];
  if (e.ENTITLEMENT_WEBHOOK_URL) {
    if (!e.ENTITLEMENT_WEBHOOK_SECRET)
      problems.push('ENTITLEMENT_WEBHOOK_SECRET: required with ENTITLEMENT_WEBHOOK_URL (32+ characters)');
    else {
      const retry = {
        baseSeconds: e.ENTITLEMENT_WEBHOOK_RETRY_BASE_SECONDS ?? 5,
        maxSeconds: e.ENTITLEMENT_WEBHOOK_RETRY_MAX_SECONDS ?? 3600,
      };
      if (retry.maxSeconds < retry.baseSeconds)
        problems.push(
          'ENTITLEMENT_WEBHOOK_RETRY_MAX_SECONDS: must be at least ENTITLEMENT_WEBHOOK_RETRY_BASE_SECONDS',
        );
      webhook = {
        url: new URL(e.ENTITLEMENT_WEBHOOK_URL),
        secret: e.ENTITLEMENT_WEBHOOK_SECRET,
        maxAttempts: e.ENTITLEMENT_WEBHOOK_MAX_ATTEMPTS ?? 10,
        retry,
      };
    }
  } else if (e.ENTITLEMENT_WEBHOOK_SECRET)
    problems.push('ENTITLEMENT_WEBHOOK_URL: required when ENTITLEMENT_WEBHOOK_SECRET is set');
  if (!transport) return undefined;
  return {
    transport,
    webhook,
    sweepSchedule: e.ENTITLEMENT_FEED_SWEEP_SCHEDULE ?? DEFAULT_FEED_SWEEP_SCHEDULE,
    localSweepIntervalSeconds: e.ENTITLEMENT_FEED_SWEEP_INTERVAL_SECONDS ?? 60,
  };
}

/** The timers whose NCRONTAB schedule is a setting, with their defaults. */
const TIMER_SCHEDULES = {
  BILLING_RECONCILE_SCHEDULE: DEFAULT_RECONCILE_SCHEDULE,
  BILLING_RETENTION_SCHEDULE: DEFAULT_RETENTION_SCHEDULE,
  BILLING_SEAT_SYNC_SCHEDULE: DEFAULT_SEAT_SYNC_SCHEDULE,
  BILLING_CONTRACT_INVOICING_SCHEDULE: DEFAULT_CONTRACT_INVOICING_SCHEDULE,
  ENTITLEMENT_FEED_SWEEP_SCHEDULE: DEFAULT_FEED_SWEEP_SCHEDULE,
} as const;

/**
 * A timer's schedule, read at module load like the queue transport: the Functions host must know a
 * trigger's schedule when it indexes the app, before the rest of the configuration is read.
 */
export function timerScheduleFromEnv(
  setting: keyof typeof TIMER_SCHEDULES,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  const value = (env[setting] ?? '').trim();
  if (value === '') return TIMER_SCHEDULES[setting];
  const parsed = ncrontab.safeParse(value);
  if (!parsed.success) throw new ConfigError([`${setting}: ${parsed.error.issues[0]?.message ?? 'invalid'}`]);
  return parsed.data;
}

export const reconcileScheduleFromEnv = (env?: Readonly<Record<string, string | undefined>>) =>
  timerScheduleFromEnv('BILLING_RECONCILE_SCHEDULE', env);
export const retentionScheduleFromEnv = (env?: Readonly<Record<string, string | undefined>>) =>
  timerScheduleFromEnv('BILLING_RETENTION_SCHEDULE', env);
export const feedSweepScheduleFromEnv = (env?: Readonly<Record<string, string | undefined>>) =>
  timerScheduleFromEnv('ENTITLEMENT_FEED_SWEEP_SCHEDULE', env);
export const seatSyncScheduleFromEnv = (env?: Readonly<Record<string, string | undefined>>) =>
  timerScheduleFromEnv('BILLING_SEAT_SYNC_SCHEDULE', env);
export const contractInvoicingScheduleFromEnv = (env?: Readonly<Record<string, string | undefined>>) =>
  timerScheduleFromEnv('BILLING_CONTRACT_INVOICING_SCHEDULE', env);

/**
 * Which trigger the processor function registers with, read at module load (before the rest of the
 * configuration is needed): the Functions host must know its triggers when it indexes the app.
 */
export function queueTransportFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): 'storage' | 'servicebus' {
  const value = (env.BILLING_QUEUE_TRANSPORT ?? '').trim() || 'storage';
  const parsed = z.enum(['storage', 'servicebus']).safeParse(value);
  if (!parsed.success)
    throw new ConfigError([`BILLING_QUEUE_TRANSPORT: must be "storage" or "servicebus", not "${value}"`]);
  return parsed.data;
}
