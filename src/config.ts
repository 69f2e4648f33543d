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
}

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
  MAX_BODY_BYTES: optional.pipe(
    z.coerce
      .number<string | undefined>()
      .int()
      .min(1024)
      .max(10 * 1024 * 1024)
      .optional(),
  ),
});

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

  if (problems.length > 0 || !storage || !e.AUTH_ISSUER || !e.AUTH_AUDIENCE) throw new ConfigError(problems);

  return {
    storage,
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
  };
}
