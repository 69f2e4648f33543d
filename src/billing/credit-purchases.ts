import { auditAction } from './audit/entry.js';
import type { CreditPack } from './catalog.js';
import type { Clock } from './clock.js';
import { clawbackTarget } from './credit-reversal.js';
import { type GrantRefusal, verifySession } from './credit-verification.js';
import { CreditsContentionError } from './credits.js';
import type { Customers } from './customers.js';
import type { OwnerId } from './ids.js';
import { auditActorAndCause, type SyncCause } from './lifecycle.js';
import {
  balanceAction,
  grantMarkerKey,
  grantMarkerSchema,
  type LedgerKind,
  ledgerRowKey,
  parseRow,
  type ReversalRow,
  refusalMarkerKey,
  reversalRowKey,
  reversalSchema,
} from './metering-rows.js';
import { definedProps } from './owner/rows.js';
import { type OwnerSnapshot, withVersion } from './owner/snapshot.js';
import type { ChargeInfo, CheckoutSessionInfo, PaymentsGateway } from './payments.js';
import type { Pricing } from './pricing.js';
import { type Attempt, answer, type CommitOptions, commit, RETRY, write } from './storage/commit.js';
import type { EntityTable, StoredEntity, TransactionAction } from './store.js';

/**
 * Credit packs bought through Checkout (payment mode): granted once when Stripe says the session is paid,
 * and taken back when the payment is refunded or disputed. Both read Stripe's objects, never an event
 * body, so they are right whatever order or how many times the events arrive.
 *
 * Rows (owner partition, `metering-rows.ts`): the grant marker `credits|grant|<sessionId>` (exactly once),
 * the reversal row `credits|reversal|<sessionId>` (credits taken back so far, ETag-guarded), ledger rows
 * and `audit|<at>|<causeId>|<sessionId>` rows. Every change commits with the balance and the snapshot's
 * version in one transaction, so a crash at any point leaves either all of it or none.
 *
 * A refund or dispute processed before its grant (events out of order, a grant waiting on a Stripe outage)
 * finds no grant marker: it records the charge id on the reversal row and changes nothing else. The grant
 * creates or updates that same row in its transaction, so whichever commits second sees the other: a grant
 * that finds a charge id re-reads the charge and takes back, in the same transaction, what it says is gone.
 */
export type CreditPurchaseOutcome =
  | { readonly kind: 'granted'; readonly ownerId: OwnerId; readonly credits: number }
  | { readonly kind: 'duplicate'; readonly ownerId: OwnerId }
  /** Not a purchase we grant for (unpaid, not a pack, amount or currency not the pack's); logged and audited. */
  | { readonly kind: 'not_granted'; readonly ownerId: OwnerId; readonly reason: GrantRefusal }
  /** Credits taken back (negative) or given back after a won dispute (positive). */
  | { readonly kind: 'reversed'; readonly ownerId: OwnerId; readonly credits: number }
  | { readonly kind: 'unchanged'; readonly ownerId: OwnerId | null; readonly reason: string };

export interface CreditPurchases {
  /** Grants a paid pack's credits exactly once per session. `session` was just read from Stripe. */
  grantForSession(
    ownerId: OwnerId,
    session: CheckoutSessionInfo,
    cause: SyncCause,
  ): Promise<CreditPurchaseOutcome>;
  /**
   * Brings a pack purchase's credits in line with its charge's refunds and dispute (re-read from Stripe):
   * converges to the same balance however many refund and dispute events arrive, in any order.
   */
  reconcileCharge(chargeId: string, cause: SyncCause): Promise<CreditPurchaseOutcome>;
}

export interface CreditPurchasesDeps {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  /** Reads owner snapshots (the balance, and the version every change bumps). */
  readonly owners: { read(ownerId: OwnerId): Promise<OwnerSnapshot> };
  readonly payments: Pick<PaymentsGateway, 'getCharge' | 'checkoutSessionForPaymentIntent'>;
  readonly customers: Pick<Customers, 'ownerOf'>;
  /** Live pack prices by lookup key: what a session must have paid. */
  readonly pricing: Pick<Pricing, 'current' | 'refresh'>;
  readonly packs: readonly CreditPack[];
  readonly clock: Clock;
  /** Where refused grants are reported (besides their audit row). @default console.warn */
  readonly log?: (line: string) => void;
  /** Rounds of ETag conflicts with other processes before giving up. @default 10 */
  readonly maxAttempts?: number;
}

export function createCreditPurchases(deps: CreditPurchasesDeps): CreditPurchases {
  const { table, owners, payments, customers, pricing, packs, clock } = deps;
  const log = deps.log ?? ((line: string) => console.warn(line));
  const maxAttempts = deps.maxAttempts ?? 10;
  const options = (what: string): CommitOptions => ({
    what,
    maxAttempts,
    exhausted: (message, tableName, cause) => new CreditsContentionError(message, tableName, { cause }),
  });

  const readReversal = (row: StoredEntity | undefined) =>
    row === undefined ? undefined : { row: parseRow(reversalSchema, row), etag: row.etag };

  /** Audits a refused grant, once per session and cause (a redelivered event writes nothing more). */
  async function refuse(
    ownerId: OwnerId,
    session: CheckoutSessionInfo,
    reason: GrantRefusal,
    detail: string,
    cause: SyncCause,
  ): Promise<CreditPurchaseOutcome> {
    log(`credits: checkout ${session.id} of ${ownerId} not granted (${reason}): ${detail}`);
    const outcome: CreditPurchaseOutcome = { kind: 'not_granted', ownerId, reason };
    return commit<CreditPurchaseOutcome>(
      table,
      ownerId,
      async () => {
        const at = clock.now().toISOString();
        return write(
          [
            {
              kind: 'create',
              rowKey: refusalMarkerKey(session.id, cause.kind, cause.id),
              props: { reason, at },
            },
            audit(cause, session.id, undefined, at, 'credits_not_granted', undefined, {
              refusal: reason,
              detail,
            }),
          ],
          () => outcome,
          (error) => (error.actionIndex === 0 && error.reason === 'exists' ? outcome : RETRY),
        );
      },
      options(`auditing the refused grant of ${session.id} to ${ownerId}`),
    );
  }

  async function grantForSession(
    ownerId: OwnerId,
    session: CheckoutSessionInfo,
    cause: SyncCause,
  ): Promise<CreditPurchaseOutcome> {
    const duplicate: CreditPurchaseOutcome = { kind: 'duplicate', ownerId };
    // A redelivery stops here, before any price lookup; a concurrent copy fails on the marker's create.
    if (await table.get(ownerId, grantMarkerKey(session.id))) return duplicate;
    const verdict = await verifySession(session, packs, pricing);
    if (verdict.kind === 'refuse') return refuse(ownerId, session, verdict.reason, verdict.detail, cause);
    const { credits, pack, quantity } = verdict;
    const description = quantity === 1 ? pack.displayName : `${quantity} x ${pack.displayName}`;

    return commit<CreditPurchaseOutcome>(
      table,
      ownerId,
      async (): Promise<Attempt<CreditPurchaseOutcome>> => {
        const [marker, reversalRow, snapshot] = await Promise.all([
          table.get(ownerId, grantMarkerKey(session.id)),
          table.get(ownerId, reversalRowKey(session.id)),
          owners.read(ownerId),
        ]);
        if (marker) return answer(duplicate);
        const reversal = readReversal(reversalRow);
        // Our rows first, then Stripe: a refund seen before this grant left its charge id; what the charge
        // says now is taken back in this same transaction.
        const chargeId = reversal?.row.chargeId;
        const charge = chargeId === undefined ? undefined : await payments.getCharge(chargeId);
        const clawed = charge === undefined ? 0 : clawbackTarget(credits, charge);
        const now = clock.now();
        const at = now.toISOString();
        const granted = snapshot.balance.credits + credits;
        const balanceAfter = granted - clawed;
        const rev = (reversal?.row.rev ?? 0) + (clawed > 0 ? 1 : 0);
        const actions: TransactionAction[] = [
          // First: if it fails as a duplicate, the failing index says so.
          {
            kind: 'create',
            rowKey: grantMarkerKey(session.id),
            props: { credits, description, balanceAfter: granted, at, sessionId: session.id },
          },
          balanceAction(snapshot.balance.etag, balanceAfter, at),
          ledgerRow(now, 0, 'grant', session.id, session.id, credits, granted, description, at),
          reversalAction(session.id, reversal, { clawed, rev, chargeId, at }),
          audit(
            cause,
            session.id,
            rev,
            at,
            'credits_granted',
            { before: snapshot.balance.credits, after: balanceAfter },
            { pack: pack.id, quantity, credits, clawedBack: clawed, chargeId },
          ),
        ];
        if (clawed > 0)
          actions.push(
            ledgerRow(
              now,
              1,
              'clawback',
              `${session.id}.${rev}`,
              session.id,
              -clawed,
              balanceAfter,
              clawbackDescription(pack.displayName, charge),
              at,
            ),
          );
        return write<CreditPurchaseOutcome>(
          withVersion(snapshot, actions),
          () => ({ kind: 'granted', ownerId, credits }),
          (error) => (error.actionIndex === 0 && error.reason === 'exists' ? duplicate : RETRY),
        );
      },
      options(`granting credits from ${session.id} to ${ownerId}`),
    );
  }

  async function reconcileCharge(chargeId: string, cause: SyncCause): Promise<CreditPurchaseOutcome> {
    // This first read only finds the purchase and its owner; the target is computed from a read made
    // after our rows are read (below), so an older read can never undo a newer one.
    const first = await payments.getCharge(chargeId);
    if (first.paymentIntentId === null)
      return { kind: 'unchanged', ownerId: null, reason: `charge ${chargeId} has no payment intent` };
    const session = await payments.checkoutSessionForPaymentIntent(first.paymentIntentId);
    if (session === null || session.mode !== 'payment')
      return { kind: 'unchanged', ownerId: null, reason: `charge ${chargeId} is not a checkout purchase` };
    const customerId = first.customerId ?? session.customerId;
    const ownerId = customerId === null ? undefined : await customers.ownerOf(customerId);
    if (ownerId === undefined)
      return { kind: 'unchanged', ownerId: null, reason: `charge ${chargeId} is not one of our customers'` };
    const unchanged = (reason: string): CreditPurchaseOutcome => ({ kind: 'unchanged', ownerId, reason });

    return commit<CreditPurchaseOutcome>(
      table,
      ownerId,
      async (): Promise<Attempt<CreditPurchaseOutcome>> => {
        const [markerRow, reversalRow] = await Promise.all([
          table.get(ownerId, grantMarkerKey(session.id)),
          table.get(ownerId, reversalRowKey(session.id)),
        ]);
        const reversal = readReversal(reversalRow);
        if (markerRow === undefined) {
          if (reversal?.row.chargeId !== undefined) return answer(unchanged('not granted yet; charge noted'));
          const verdict = await verifySession(session, packs, pricing);
          if (verdict.kind === 'refuse') return answer(unchanged(`not a pack purchase (${verdict.reason})`));
          // Nothing to take back yet: note the charge, so the grant takes back what it says when it comes.
          return write(
            [
              reversalAction(session.id, reversal, {
                clawed: 0,
                rev: 0,
                chargeId,
                at: clock.now().toISOString(),
              }),
            ],
            () => unchanged('not granted yet; charge noted for the grant'),
          );
        }
        const granted = parseRow(grantMarkerSchema, markerRow).credits;
        const charge = await payments.getCharge(chargeId);
        const clawed = reversal?.row.clawed ?? 0;
        const target = clawbackTarget(granted, charge);
        const delta = target - clawed;
        if (delta === 0) return answer(unchanged('credits already match the charge'));

        const snapshot = await owners.read(ownerId);
        const now = clock.now();
        const at = now.toISOString();
        const balanceAfter = snapshot.balance.credits - delta;
        const kind: LedgerKind = delta > 0 ? 'clawback' : 'reinstate';
        const rev = (reversal?.row.rev ?? 0) + 1;
        const name = parseRow(grantMarkerSchema, markerRow).description;
        return write<CreditPurchaseOutcome>(
          withVersion(snapshot, [
            reversalAction(session.id, reversal, { clawed: target, rev, chargeId, at }),
            balanceAction(snapshot.balance.etag, balanceAfter, at),
            ledgerRow(
              now,
              0,
              kind,
              `${session.id}.${rev}`,
              session.id,
              -delta,
              balanceAfter,
              delta > 0
                ? clawbackDescription(name, charge)
                : `${name}: a won dispute gives back ${-delta} credit(s)`,
              at,
            ),
            audit(
              cause,
              session.id,
              rev,
              at,
              delta > 0 ? 'credits_clawed_back' : 'credits_reinstated',
              { before: snapshot.balance.credits, after: balanceAfter },
              {
                chargeId,
                credits: -delta,
                clawedBefore: clawed,
                clawedAfter: target,
                granted,
                amount: charge.amount,
                amountRefunded: charge.amountRefunded,
                disputeStatus: charge.dispute?.status,
                disputeAmount: charge.dispute?.amount,
              },
            ),
          ]),
          () => ({ kind: 'reversed', ownerId, credits: -delta }),
        );
      },
      options(`reconciling charge ${chargeId} with the credits of ${session.id} for ${ownerId}`),
    );
  }

  return { grantForSession, reconcileCharge };
}

/** Creates the reversal row, or updates it on condition that it is still the one read. */
function reversalAction(
  sessionId: string,
  read: { readonly row: ReversalRow; readonly etag: string } | undefined,
  next: {
    readonly clawed: number;
    readonly rev: number;
    readonly chargeId: string | undefined;
    readonly at: string;
  },
): TransactionAction {
  const props = definedProps({
    clawed: next.clawed,
    rev: next.rev,
    chargeId: next.chargeId ?? read?.row.chargeId,
    updatedAt: next.at,
  });
  return read === undefined
    ? { kind: 'create', rowKey: reversalRowKey(sessionId), props }
    : { kind: 'update', rowKey: reversalRowKey(sessionId), props, etag: read.etag };
}

function ledgerRow(
  now: Date,
  seq: number,
  kind: LedgerKind,
  keyRef: string,
  ref: string,
  credits: number,
  balanceAfter: number,
  description: string,
  at: string,
): TransactionAction {
  return {
    kind: 'create',
    rowKey: ledgerRowKey(now, seq, kind, keyRef),
    props: { kind, credits, balanceAfter, ref, description, at },
  };
}

function clawbackDescription(name: string, charge: ChargeInfo | undefined): string {
  if (charge === undefined) return name;
  const dispute = charge.dispute ? `, dispute ${charge.dispute.status} for ${charge.dispute.amount}` : '';
  return `${name}: payment refunded ${charge.amountRefunded} of ${charge.amount} ${charge.currency}${dispute}`;
}

/**
 * An audit row in the owner's partition (the shared shape, `audit/entry.ts`), named by the cause and the
 * purchase and its change count (`<causeId>|<sessionId>.<rev>`), so one cause touching two purchases, or
 * one purchase twice, writes distinct rows. The credits before and after are the balance.
 */
function audit(
  cause: SyncCause,
  sessionId: string,
  rev: number | undefined,
  at: string,
  kind: string,
  balance: { readonly before: number; readonly after: number } | undefined,
  details: Readonly<Record<string, string | number | undefined>>,
): TransactionAction {
  return auditAction(
    {
      at,
      kind,
      ...auditActorAndCause(cause),
      before: balance === undefined ? null : { balance: balance.before },
      after: balance === undefined ? null : { balance: balance.after },
      details: { sessionId, ...details },
    },
    `${cause.id}|${sessionId}${rev === undefined ? '' : `.${rev}`}`,
  );
}
