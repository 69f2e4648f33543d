import { z } from 'zod';
import { FLAG_NAMES, type FlagName, LIMIT_NAMES, type LimitName } from '../catalog.js';
import { addMonthsClamped } from '../periods.js';
import type { SubscriptionStatus } from '../subscription.js';

/**
 * An enterprise contract: terms an operator sets for one billing owner (`PUT /api/ops/owners/{id}/contract`),
 * with no checkout. While it is active (`startsAt <= now < endsAt`) the owner is on the enterprise plan with
 * the contract's limits, flags and seats, whatever Stripe says about a self-serve subscription
 * (`access/contract-terms.ts`). It lives in the owner's snapshot (`s|o|contract`), so every decision
 * reads it in the same query as the rest.
 *
 * Billing is `manual` (invoiced outside this system: always paid as far as access is concerned) or
 * `stripe_invoice`: one Stripe invoice per period, sent to the customer (`collection_method: send_invoice`)
 * and due `daysUntilDue` days after it is issued. The invoices issued are recorded on the contract row,
 * and their payment state drives access like a subscription's (`contractPaymentStatus`).
 */

const isoInstant = z.iso.datetime({ offset: true });
const limitValue = z.number().int().nonnegative().nullable();

/** Limits other than `seats` (the contract's own field); each omitted one is the enterprise plan's. */
const LIMITS_BUT_SEATS = LIMIT_NAMES.filter((name): name is Exclude<LimitName, 'seats'> => name !== 'seats');

export const contractLimitsSchema = z.strictObject(
  Object.fromEntries(LIMITS_BUT_SEATS.map((name) => [name, limitValue.optional()])) as Record<
    Exclude<LimitName, 'seats'>,
    z.ZodOptional<typeof limitValue>
  >,
);
export const contractFlagsSchema = z.strictObject(
  Object.fromEntries(FLAG_NAMES.map((name) => [name, z.boolean().optional()])) as Record<
    FlagName,
    z.ZodOptional<z.ZodBoolean>
  >,
);

export const CONTRACT_INTERVALS = ['month', 'year'] as const;

/** What `stripe_invoice` billing needs. */
export const invoicingSchema = z.strictObject({
  /** Per period, in the currency's smallest unit (cents). A last period cut short by `endsAt` is billed in full. */
  amount: z.number().int().positive().max(99_999_999),
  /** ISO 4217, lower case as Stripe writes it. */
  currency: z
    .string()
    .regex(/^[a-zA-Z]{3}$/, 'must be a three-letter ISO currency code')
    .transform((c) => c.toLowerCase()),
  interval: z.enum(CONTRACT_INTERVALS),
  /** Days from issue to the due date (Stripe's `days_until_due`). */
  daysUntilDue: z.number().int().min(0).max(365),
  /** Days past the due date during which access stays in grace (soft limits) before it locks. @default 14 */
  graceDays: z.number().int().min(0).max(365).default(14),
});
export type Invoicing = z.infer<typeof invoicingSchema>;

/** The fields of the terms an operator sets (the PUT body has these and `reason`). */
export const contractTermsShape = {
  plan: z.literal('enterprise'),
  limits: contractLimitsSchema.default({}),
  flags: contractFlagsSchema.default({}),
  /** People the owner may have across its organizations (the `seats` limit), the owner included. */
  seats: z.number().int().positive().max(1_000_000),
  startsAt: isoInstant,
  endsAt: isoInstant,
  billing: z.enum(['manual', 'stripe_invoice']),
  invoicing: invoicingSchema.optional(),
};

/** The rules between fields of the terms, for every schema made of `contractTermsShape`. */
export function refineTerms(
  terms: {
    readonly startsAt: string;
    readonly endsAt: string;
    readonly billing: string;
    readonly invoicing?: unknown;
  },
  ctx: z.RefinementCtx,
): void {
  if (Date.parse(terms.endsAt) <= Date.parse(terms.startsAt))
    ctx.addIssue({ code: 'custom', path: ['endsAt'], message: 'must be after startsAt' });
  if (terms.billing === 'stripe_invoice' && terms.invoicing === undefined)
    ctx.addIssue({ code: 'custom', path: ['invoicing'], message: 'is required with billing stripe_invoice' });
  if (terms.billing === 'manual' && terms.invoicing !== undefined)
    ctx.addIssue({ code: 'custom', path: ['invoicing'], message: 'is only for billing stripe_invoice' });
}

/** The terms an operator sets: what the contract row and an audit row's before/after hold. */
export const contractTermsSchema = z.strictObject(contractTermsShape).superRefine(refineTerms);
export type ContractTerms = z.infer<typeof contractTermsSchema>;

export const INVOICE_STATES = ['draft', 'open', 'paid', 'uncollectible', 'void'] as const;

/** One period's Stripe invoice, as last read from Stripe. */
export const contractInvoiceSchema = z.object({
  period: z.number().int().nonnegative(),
  periodStart: isoInstant,
  periodEnd: isoInstant,
  invoiceId: z.string(),
  status: z.enum(INVOICE_STATES),
  amountDue: z.number().int().nonnegative(),
  amountPaid: z.number().int().nonnegative(),
  currency: z.string(),
  /** `null` until finalized. */
  dueAt: isoInstant.nullable(),
  /** Failed payment attempts (a card the customer tried on the hosted page). */
  attempts: z.number().int().nonnegative(),
  hostedInvoiceUrl: z.string().nullable(),
});
export type ContractInvoice = z.infer<typeof contractInvoiceSchema>;

/** The stored contract (`s|o|contract`): its terms, identity, and the invoices issued so far. */
export const contractStateSchema = z.object({
  /** Stable across edits of an unfinished contract; a new contract after one ended gets a new id. */
  id: z.string().min(1).max(64),
  terms: contractTermsSchema,
  createdAt: isoInstant,
  updatedAt: isoInstant,
  updatedBy: z.string(),
  invoices: z.array(contractInvoiceSchema),
});
export type ContractState = z.infer<typeof contractStateSchema>;

/** Whether the contract governs the owner at `at` (`startsAt <= at < endsAt`). */
export function contractActive(contract: ContractState | undefined, at: Date): contract is ContractState {
  if (contract === undefined) return false;
  const t = at.getTime();
  return Date.parse(contract.terms.startsAt) <= t && t < Date.parse(contract.terms.endsAt);
}

export interface ContractPeriod {
  readonly period: number;
  readonly start: Date;
  /** Exclusive; the contract's end for a last period cut short. */
  readonly end: Date;
}

/** The billing periods of a `stripe_invoice` contract that have started by `at` (each is billed in advance). */
export function periodsStartedBy(terms: ContractTerms, at: Date): ContractPeriod[] {
  if (terms.invoicing === undefined) return [];
  const months = terms.invoicing.interval === 'month' ? 1 : 12;
  const anchor = new Date(terms.startsAt);
  const endsAt = Date.parse(terms.endsAt);
  const out: ContractPeriod[] = [];
  // Bounded: a contract cannot start more periods than months between its start and end.
  for (let n = 0; n < 12 * 200; n++) {
    const start = addMonthsClamped(anchor, n * months);
    if (start.getTime() >= endsAt || start.getTime() > at.getTime()) break;
    const next = addMonthsClamped(anchor, (n + 1) * months);
    out.push({ period: n, start, end: new Date(Math.min(next.getTime(), endsAt)) });
  }
  return out;
}

const DAY_MS = 86_400_000;

/**
 * The contract's payment state in the subscription statuses access levels are defined for (`levels.ts`),
 * so the one rule of access applies: the worst state of its invoices at `at`.
 * - `unpaid` (locked): an invoice marked uncollectible;
 * - `past_due` (locked): an open invoice more than `graceDays` past its due date;
 * - `grace` (soft limits): an open invoice past its due date;
 * - `retrying` (full): an open invoice with a failed payment attempt, not yet due;
 * - `active`: everything else (paid, void, open and not yet due; always for `manual` billing).
 */
/**
 * The instants at which `contractPaymentStatus` moves by the clock alone (an open invoice falling due, then
 * past its grace), with no write: readers that keep answers must not keep them past these.
 */
export function contractPaymentInstants(contract: ContractState): number[] {
  const invoicing = contract.terms.invoicing;
  if (contract.terms.billing !== 'stripe_invoice' || invoicing === undefined) return [];
  return contract.invoices.flatMap((invoice) => {
    if (invoice.status !== 'open' || invoice.dueAt === null) return [];
    const due = Date.parse(invoice.dueAt);
    return [due, due + invoicing.graceDays * DAY_MS];
  });
}

export function contractPaymentStatus(contract: ContractState, at: Date): SubscriptionStatus {
  const invoicing = contract.terms.invoicing;
  if (contract.terms.billing !== 'stripe_invoice' || invoicing === undefined) return 'active';
  const rank: readonly SubscriptionStatus[] = ['active', 'retrying', 'grace', 'past_due', 'unpaid'];
  let worst = 0;
  for (const invoice of contract.invoices) {
    let status: SubscriptionStatus = 'active';
    if (invoice.status === 'uncollectible') status = 'unpaid';
    else if (invoice.status === 'open') {
      const due = invoice.dueAt === null ? undefined : Date.parse(invoice.dueAt);
      if (due !== undefined && at.getTime() >= due + invoicing.graceDays * DAY_MS) status = 'past_due';
      else if (due !== undefined && at.getTime() >= due) status = 'grace';
      else if (invoice.attempts > 0) status = 'retrying';
    }
    worst = Math.max(worst, rank.indexOf(status));
  }
  return rank[worst] ?? 'active';
}
