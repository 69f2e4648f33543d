/**
 * `npm run demo`: the subscription story, step by step, against a running `npm start` (local host, Stripe
 * sandbox, queue worker). Safe to repeat: every run signs up a new organization.
 *
 *   DEMO_BASE_URL    the backend (default http://127.0.0.1:$LOCAL_PORT, i.e. :7071)
 *   STRIPE_API_BASE  the Stripe sandbox (default http://127.0.0.1:$STRIPE_SANDBOX_PORT, i.e. :12111)
 *   DEMO_TIMEOUT_MS  how long each step may wait for webhooks to land (default 30000)
 */
import { z } from 'zod';
import { STRIPE_API_VERSION } from '../src/adapters/stripe/gateway.js';
import { withLocalDefaults } from '../src/local/defaults.js';
import { mintToken } from '../src/local/token.js';

const env = withLocalDefaults(process.env);
const API = (process.env.DEMO_BASE_URL || `http://127.0.0.1:${env.LOCAL_PORT}`).replace(/\/+$/, '');
const SANDBOX = (env.STRIPE_API_BASE || `http://127.0.0.1:${env.STRIPE_SANDBOX_PORT}`).replace(/\/+$/, '');
const timeoutSetting = Number(process.env.DEMO_TIMEOUT_MS);
const TIMEOUT_MS = Number.isFinite(timeoutSetting) && timeoutSetting > 0 ? timeoutSetting : 30_000;

class DemoError extends Error {}

// ---- what we read -----------------------------------------------------------------------------------

const limitsSchema = z.record(z.string(), z.number().nullable());
const summarySchema = z.object({
  plan: z.object({ name: z.string(), interval: z.string().nullable() }),
  status: z.string(),
  accessLevel: z.string(),
  cancelAtPeriodEnd: z.boolean(),
  currentPeriodEnd: z.string().nullable(),
  scheduledChange: z.object({ plan: z.string(), interval: z.string(), effectiveAt: z.string() }).nullable(),
  limits: limitsSchema,
  seats: z.object({ used: z.number(), billed: z.number().nullable(), nextPeriod: z.number().nullable() }),
});
type Summary = z.infer<typeof summarySchema>;
const plansSchema = z.object({ plans: z.array(z.object({ name: z.string(), limits: limitsSchema })) });
const decisionSchema = z.object({
  allowed: z.boolean(),
  reason: z.string(),
  limit: z.number().nullable(),
  used: z.number().nullable(),
  plan: z.string(),
});
const decisionSourceSchema = decisionSchema.extend({ source: z.string() });
const checkoutSchema = z.object({ url: z.string(), sessionId: z.string() });
const changeSchema = z.object({ kind: z.string(), summary: summarySchema });
const invoiceSchema = z.object({
  id: z.string(),
  number: z.string().nullable(),
  status: z.string(),
  currency: z.string(),
  amountDue: z.number(),
  attemptCount: z.number(),
  billingReason: z.string().nullable(),
  created: z.string(),
});
const invoicesSchema = z.object({ invoices: z.array(invoiceSchema) });
const sessionSchema = z.object({ customer: z.string() });
const sandboxInvoiceSchema = z.object({
  id: z.string(),
  status: z.string().nullable(),
  attempt_count: z.number(),
});
const termsSchema = z.object({ limits: limitsSchema });
const previewSchema = z.object({
  kind: z.string(),
  effectiveAt: z.string(),
  current: termsSchema,
  after: termsSchema,
  dueNow: z.object({ amount: z.number(), currency: z.string() }),
  locked: z.object({ workflows: z.array(z.unknown()), credentials: z.array(z.unknown()) }),
});
const overridesSchema = z.object({
  limits: limitsSchema,
  flags: z.record(z.string(), z.boolean()),
  expiresAt: z.string().nullable().optional(),
});
const auditPageSchema = z.object({
  items: z.array(
    z.object({
      at: z.string(),
      kind: z.string(),
      actor: z.object({ kind: z.string(), id: z.string() }),
      cause: z.object({ kind: z.string() }),
      reason: z.string().optional(),
    }),
  ),
});
const ignored = z.unknown();

// ---- HTTP -------------------------------------------------------------------------------------------

interface CallOptions {
  readonly token?: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

async function call<T>(schema: z.ZodType<T>, method: string, url: string, options: CallOptions = {}) {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
  } catch (error) {
    const cause =
      error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    const [what, setting] = url.startsWith(SANDBOX)
      ? ['the Stripe sandbox', 'STRIPE_API_BASE']
      : ['the billing backend', 'DEMO_BASE_URL'];
    throw new DemoError(
      `Cannot reach ${what} at ${url} (${cause}). Start it with npm start (in another terminal), or point ${setting} at it.`,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    throw new DemoError(`${method} ${url} answered ${response.status}: ${text.slice(0, 400)}`);
  }
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    throw new DemoError(`${method} ${url} answered ${response.status} with no JSON: ${text.slice(0, 200)}`);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new DemoError(`${method} ${url}: unexpected response\n${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

const api = <T>(schema: z.ZodType<T>, method: string, path: string, options?: CallOptions) =>
  call(schema, method, `${API}/api${path}`, options);
const sandbox = <T>(schema: z.ZodType<T>, method: string, path: string, body?: unknown) =>
  call(schema, method, `${SANDBOX}${path}`, { body: method === 'GET' ? undefined : (body ?? {}) });

/** Polls `read` until `done`; the queue carries webhooks, so state arrives a moment after the cause. */
async function waitFor<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  show: (value: T) => string = (value) => JSON.stringify(value) ?? 'nothing',
) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      throw new DemoError(
        `Timed out after ${TIMEOUT_MS / 1000}s waiting for ${what}; last seen: ${show(value)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// ---- output -----------------------------------------------------------------------------------------

const heading = (n: number, title: string) => console.log(`\n${n}. ${title}`);
const say = (line: string) => console.log(`   ${line}`);
const limit = (value: number | null | undefined) =>
  value === null ? '∞' : value === undefined ? '?' : value.toLocaleString('en-US');

function brief(s: Summary): string {
  const l = s.limits;
  const change = s.scheduledChange
    ? `${s.scheduledChange.plan} ${s.scheduledChange.interval} at ${s.scheduledChange.effectiveAt.slice(0, 10)}`
    : '-';
  return [
    `plan ${s.plan.name}${s.plan.interval ? ` ${s.plan.interval}` : ''}`,
    `status ${s.status}`,
    `access ${s.accessLevel}`,
    `limits workflows ${limit(l.workflows)}, per org ${limit(l.workflows_per_org)}, executions ${limit(l.executions)}, seats ${limit(l.seats)}`,
    `scheduled ${change}`,
    `cancelAtPeriodEnd ${s.cancelAtPeriodEnd}`,
  ].join(' | ');
}
const showSummary = (s: Summary) => say(`summary: ${brief(s)}`);

// ---- the story --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const stamp = Date.now().toString(36);
  const [orgId, ownerId, memberId] = [`acme-${stamp}`, `alice-${stamp}`, `bob-${stamp}`];
  const tokenFor = (sub: string, extra: { org?: string; roles?: string[] } = {}) =>
    mintToken({
      sub,
      ...extra,
      secret: env.AUTH_JWT_SECRET ?? '',
      issuer: env.AUTH_ISSUER ?? '',
      audience: env.AUTH_AUDIENCE ?? '',
    });
  const service = await tokenFor('demo-platform', { roles: ['service'] });
  const owner = await tokenFor(ownerId, { org: orgId });

  await api(ignored, 'GET', '/health');
  await sandbox(ignored, 'GET', '/_sandbox/clock');
  console.log(`Billing demo against ${API}/api (Stripe sandbox ${SANDBOX})`);

  const summary = () => api(summarySchema, 'GET', '/billing/summary', { token: owner });
  const waitSummary = (what: string, done: (s: Summary) => boolean) => waitFor(what, summary, done, brief);
  const invoices = async () =>
    (await api(invoicesSchema, 'GET', '/billing/invoices', { token: owner })).invoices;
  const check = () =>
    api(decisionSchema, 'POST', '/entitlements/check', {
      token: service,
      body: { subject: { orgId }, feature: 'workflows_per_org', quantity: 1 },
    });
  const showDecision = (d: z.infer<typeof decisionSchema>) =>
    say(
      `check workflows_per_org +1: allowed ${d.allowed} (${d.reason}), used ${d.used ?? '-'} of ${limit(d.limit)} on ${d.plan}`,
    );
  let workflows = 0;
  const addWorkflow = () =>
    api(ignored, 'PUT', `/directory/workflows/${orgId}-wf-${++workflows}`, {
      token: service,
      body: { workspace: { orgId }, nodeCount: 3 },
    });
  const advancePast = async (iso: string | null) => {
    if (!iso) throw new DemoError('The summary has no currentPeriodEnd to advance past.');
    const to = new Date(Date.parse(iso) + 60_000).toISOString();
    await sandbox(ignored, 'POST', '/_sandbox/clock/advance', { to });
    say(`sandbox clock advanced to ${to}`);
  };

  heading(1, 'An organization signs up');
  await api(ignored, 'PUT', `/directory/orgs/${orgId}`, {
    token: service,
    body: { creatorId: ownerId, name: `Acme ${stamp}` },
  });
  await api(ignored, 'PUT', `/directory/orgs/${orgId}/members/${memberId}`, { token: service });
  for (let i = 0; i < 2; i++) await addWorkflow();
  say(`org ${orgId}, created by ${ownerId} (the billing owner), member ${memberId}, ${workflows} workflows`);
  showSummary(await summary());

  heading(2, 'It hits a free limit');
  const catalog = await api(plansSchema, 'GET', '/plans');
  const perOrg = catalog.plans.find((p) => p.name === 'free')?.limits.workflows_per_org;
  if (typeof perOrg !== 'number') throw new DemoError('GET /api/plans has no free workflows_per_org limit');
  while (workflows < perOrg) await addWorkflow();
  say(`added workflows up to the free plan's workflows_per_org (${perOrg})`);
  const denied = await check();
  showDecision(denied);
  if (denied.allowed) throw new DemoError('Expected the free plan to deny another workflow.');
  // The limit holds at create too: a platform that skips the check cannot race past it.
  const over = await fetch(`${API}/api/directory/workflows/${orgId}-wf-over`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' },
    body: JSON.stringify({ workspace: { orgId }, nodeCount: 3 }),
  });
  const refusal = z
    .object({ code: z.string(), feature: z.string(), used: z.number(), limit: z.number() })
    .safeParse(await over.json());
  if (over.status !== 402 || !refusal.success)
    throw new DemoError(`Expected 402 for a workflow over the free limit, got ${over.status}.`);
  say(
    `PUT one more workflow: ${over.status} ${refusal.data.code} (${refusal.data.feature} ${refusal.data.used} of ${refusal.data.limit}); nothing written`,
  );

  heading(3, 'It checks out Pro and pays');
  const checkout = await api(checkoutSchema, 'POST', '/billing/checkout', {
    token: owner,
    body: { plan: 'pro', interval: 'monthly' },
  });
  say(`checkout session ${checkout.sessionId}: ${checkout.url}`);
  await sandbox(ignored, 'POST', `/checkout/${encodeURIComponent(checkout.sessionId)}/pay`);
  say('paid on the hosted checkout page; webhooks flow through the queue ...');
  showSummary(await waitSummary('the Pro plan', (s) => s.plan.name === 'pro' && s.status === 'active'));

  heading(4, 'It gets the new limits');
  const allowed = await check();
  showDecision(allowed);
  if (!allowed.allowed) throw new DemoError('Expected Pro to allow another workflow.');

  heading(5, 'It upgrades to Team');
  const upgrade = await api(changeSchema, 'POST', '/billing/subscription/change', {
    token: owner,
    body: { plan: 'team', interval: 'monthly' },
  });
  say(`change -> ${upgrade.kind}, in force at once`);
  showSummary(upgrade.summary);
  if (upgrade.summary.plan.name !== 'team') throw new DemoError('Expected the upgrade to apply at once.');

  heading(6, 'It adds people on Team: the Stripe quantity follows');
  const people = ['carol', 'dave', 'erin'].map((name) => `${name}-${stamp}`);
  const isSeatInvoice = (i: z.infer<typeof invoiceSchema>) => i.billingReason === 'subscription_update';
  // The upgrade above was invoiced the same way: wait for one more.
  const earlier = (await invoices()).filter(isSeatInvoice).length;
  await Promise.all(
    people.map((id) => api(ignored, 'PUT', `/directory/orgs/${orgId}/members/${id}`, { token: service })),
  );
  const used = 2 + people.length; // the owner, the first member and these
  say(`added ${people.join(', ')}: ${used} people; one coalesced seat sync goes through the queue ...`);
  const seated = await waitSummary(`quantity ${used}`, (s) => s.seats.billed === used);
  say(
    `seats: used ${seated.seats.used}, billed ${seated.seats.billed}, next period ${seated.seats.nextPeriod}`,
  );
  const prorations = await waitFor(
    'the proration invoice',
    async () => (await invoices()).filter(isSeatInvoice),
    (found) => found.length > earlier,
  );
  const proration = prorations[0];
  if (!proration) throw new DemoError('No proration invoice.');
  say(
    `proration invoice ${proration.number ?? proration.id}: ${(proration.amountDue / 100).toFixed(2)} ${proration.currency.toUpperCase()}, ${proration.status}`,
  );

  heading(7, 'It previews a downgrade to Pro, then makes it: scheduled for the renewal');
  const preview = await api(previewSchema, 'POST', '/billing/subscription/preview', {
    token: owner,
    body: { plan: 'pro', interval: 'monthly' },
  });
  say(
    `preview -> ${preview.kind} at ${preview.effectiveAt}: due now ${(preview.dueNow.amount / 100).toFixed(2)} ${preview.dueNow.currency.toUpperCase()}, ` +
      `workflows_per_org ${limit(preview.current.limits.workflows_per_org ?? null)} -> ${limit(preview.after.limits.workflows_per_org ?? null)}, ` +
      `would lock ${preview.locked.workflows.length} workflow(s) and ${preview.locked.credentials.length} credential(s)`,
  );
  const downgrade = await api(changeSchema, 'POST', '/billing/subscription/change', {
    token: owner,
    body: { plan: 'pro', interval: 'monthly' },
  });
  say(`change -> ${downgrade.kind}`);
  showSummary(downgrade.summary);
  if (downgrade.summary.scheduledChange?.plan !== 'pro') {
    throw new DemoError('Expected a scheduled downgrade.');
  }
  await advancePast(downgrade.summary.currentPeriodEnd);
  showSummary(
    await waitSummary(
      'the downgrade at renewal',
      (s) => s.plan.name === 'pro' && s.status === 'active' && s.scheduledChange === null,
    ),
  );

  heading(8, 'A payment fails');
  const session = await call(sessionSchema, 'GET', `${SANDBOX}/v1/checkout/sessions/${checkout.sessionId}`, {
    headers: { authorization: `Bearer ${env.STRIPE_SECRET_KEY}`, 'stripe-version': STRIPE_API_VERSION },
  });
  const customer = session.customer;
  await sandbox(ignored, 'POST', `/_sandbox/customers/${customer}/payment_method`, { fails: true });
  say(`card of ${customer} now declines`);
  await advancePast((await summary()).currentPeriodEnd);
  showSummary(await waitSummary('the failed renewal', (s) => s.status === 'retrying'));
  const open = await waitFor(
    'the open renewal invoice',
    async () => (await invoices()).find((i) => i.status === 'open'),
    (i) => i !== undefined,
  );
  if (!open) throw new DemoError('No open invoice.');

  /** Retries the invoice until the summary shows one of `statuses`, each retry seen through to the summary. */
  const retryUntil = async (statuses: readonly string[], max = 10) => {
    for (let n = 0; n < max; n++) {
      const retried = await sandbox(sandboxInvoiceSchema, 'POST', `/_sandbox/invoices/${open.id}/retry`);
      await waitFor(
        `invoice ${open.id} attempt ${retried.attempt_count} to be recorded`,
        async () => (await invoices()).find((i) => i.id === open.id),
        (i) => i !== undefined && (i.attemptCount >= retried.attempt_count || i.status !== 'open'),
      );
      const s = await summary();
      say(`retry ${open.id}: ${retried.status}, attempt ${retried.attempt_count} -> ${brief(s)}`);
      if (statuses.includes(s.status)) return s;
    }
    throw new DemoError(`The subscription did not reach ${statuses.join(' or ')} within ${max} retries.`);
  };
  await retryUntil(['grace']);
  await retryUntil(['past_due', 'unpaid']);

  heading(9, 'It recovers');
  await sandbox(ignored, 'POST', `/_sandbox/customers/${customer}/payment_method`, { fails: false });
  say(`card of ${customer} fixed`);
  await sandbox(ignored, 'POST', `/_sandbox/invoices/${open.id}/retry`);
  showSummary(await waitSummary('recovery', (s) => s.status === 'active' && s.accessLevel === 'full'));
  say('invoices (newest first):');
  for (const i of await invoices()) {
    const amount = `${(i.amountDue / 100).toFixed(2)} ${i.currency.toUpperCase()}`;
    say(
      `  ${i.created.slice(0, 10)} ${i.number ?? i.id} ${i.billingReason ?? '-'}: ${amount}, ${i.status}, ${i.attemptCount} attempt(s)`,
    );
  }

  heading(10, 'An operator grants an override');
  const admin = await tokenFor(`ops-${stamp}`, { roles: ['admin'] });
  const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
  const granted = await api(overridesSchema, 'PUT', `/ops/owners/${ownerId}/overrides`, {
    token: admin,
    body: { limits: { workflows_per_org: 500 }, expiresAt, reason: `demo: migration help for ${orgId}` },
  });
  say(
    `override for ${ownerId}: workflows_per_org ${limit(granted.limits.workflows_per_org ?? null)} until ${expiresAt}`,
  );
  const overridden = await api(decisionSourceSchema, 'POST', '/entitlements/check', {
    token: service,
    body: { subject: { orgId }, feature: 'workflows_per_org', quantity: 1 },
  });
  say(`check workflows_per_org +1: limit ${limit(overridden.limit)}, source ${overridden.source}`);
  if (overridden.limit !== 500 || overridden.source !== 'override')
    throw new DemoError('Expected the override to apply at once.');

  heading(11, 'The operator reads the audit trail');
  const trail = await api(auditPageSchema, 'GET', `/ops/audit?ownerId=${ownerId}&limit=50`, { token: admin });
  say(`${ownerId}'s trail, newest first (${trail.items.length} entries):`);
  for (const entry of trail.items.slice(0, 12)) {
    const why = entry.reason ? `: "${entry.reason}"` : '';
    say(
      `  ${entry.at.slice(0, 19)} ${entry.kind} by ${entry.actor.kind} ${entry.actor.id} (${entry.cause.kind})${why}`,
    );
  }
  const grant = trail.items.find((entry) => entry.kind === 'override_set');
  if (!grant) throw new DemoError('Expected the override in the audit trail.');
  const ownTrail = await api(auditPageSchema, 'GET', '/billing/audit?limit=5', { token: owner });
  say(`the owner reads the same trail at GET /api/billing/audit: ${ownTrail.items.length} newest entries`);
  console.log('\nDone.');
}

main().catch((error: unknown) => {
  console.error(`\ndemo failed: ${error instanceof DemoError ? error.message : error}`);
  process.exit(1);
});
