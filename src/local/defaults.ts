/**
 * Embedded defaults for `npm start`, `npm run token`, the tests and the benchmark: enough to run with no
 * account and no settings file. They are development values, applied only by the local tools; the
 * Functions app itself has no defaults for secrets and refuses to start without real settings.
 */
export const LOCAL_DEFAULTS = {
  AUTH_JWT_SECRET: 'local-development-only-secret-0123456789abcdef',
  AUTH_ISSUER: 'billing-local',
  AUTH_AUDIENCE: 'billing-api',
  // The local Stripe sandbox: `npm start` points STRIPE_API_BASE at it and registers the webhook.
  STRIPE_SECRET_KEY: 'sk_test_localsandbox',
  STRIPE_WEBHOOK_SECRET: 'whsec_localsandbox',
  STRIPE_SANDBOX_PORT: '12111',
  // Where the platform's UI would be; checkout and the portal send the browser back there.
  BILLING_CHECKOUT_SUCCESS_URL: 'http://localhost:3000/billing?checkout=success',
  BILLING_CHECKOUT_CANCEL_URL: 'http://localhost:3000/billing?checkout=cancel',
  BILLING_PORTAL_RETURN_URL: 'http://localhost:3000/billing',
  LOCAL_PORT: '7071',
  AZURITE_LOCATION: '.data/azurite',
  // Azurite's standard ports, so Storage Explorer and `func start` find it as usual.
  AZURITE_BLOB_PORT: '10000',
  AZURITE_QUEUE_PORT: '10001',
  AZURITE_TABLE_PORT: '10002',
} as const;

/** The environment with local defaults filled in where a setting is absent or empty. */
export function withLocalDefaults(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const merged: Record<string, string | undefined> = { ...env };
  for (const [key, value] of Object.entries(LOCAL_DEFAULTS)) {
    if (!merged[key]) merged[key] = value;
  }
  return merged;
}
