import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type AuditEntry, auditAction, type RevertHandler } from '../audit/entry.js';
import type { Catalog } from '../catalog.js';
import type { Clock } from '../clock.js';
import { conflict, notFound, validationError } from '../errors.js';
import type { OwnerId } from '../ids.js';
import { CONTRACT_ROW } from '../owner/keys.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import { type OwnerSnapshot, withVersion } from '../owner/snapshot.js';
import { answer, commit, write } from '../storage/commit.js';
import type { EntityTable, TransactionAction } from '../store.js';
import {
  type ContractState,
  type ContractTerms,
  contractActive,
  contractPaymentStatus,
  contractTermsSchema,
} from './model.js';
import { contractRowAction, lockMoveFor } from './rows.js';

/**
 * Setting and ending enterprise contracts (operators, `PUT/DELETE /api/ops/owners/{id}/contract`). Each
 * change is one transaction in the owner's partition through `commit()`: the contract row, the lock set
 * moved to the new limits (over-limit items lock, never go), the version, and the audit row, so a change
 * and its audit commit together or not at all. A contract billed by Stripe invoice is also listed in
 * `CONTRACT_INDEX_PARTITION` (written first, so a crash leaves at most an index row pointing at nothing,
 * which the invoicing timer drops) for the timer to find.
 */

/** Index of owners with a contract billed by Stripe invoice: row key = owner id. Never an owner's partition. */
export const CONTRACT_INDEX_PARTITION = 'ops|contracts';

/** Who makes an admin change, and why (every admin change is audited with these). */
export interface AdminChange {
  readonly ownerId: OwnerId;
  /** The admin's `sub`. */
  readonly actor: string;
  /** 1 to 500 characters. */
  readonly reason: string;
  /** The request's id: the audit row's cause, and its unique part (a retried request writes no second row). */
  readonly requestId: string;
  /** Set when this change reverts an audited one (its audit id). */
  readonly revertOf?: string | undefined;
}

/** What an audit row's `before`/`after` hold: the contract's identity and terms, or `null` for none. */
export const auditedContractSchema = z
  .object({ id: z.string().min(1), terms: contractTermsSchema })
  .nullable();
export type AuditedContract = z.infer<typeof auditedContractSchema>;

/** The contract as the API shows it. */
export interface ContractView {
  readonly ownerId: OwnerId;
  readonly id: string;
  readonly plan: 'enterprise';
  readonly limits: ContractTerms['limits'];
  readonly flags: ContractTerms['flags'];
  readonly seats: number;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly billing: ContractTerms['billing'];
  readonly invoicing: ContractTerms['invoicing'] | null;
  /** `startsAt <= now < endsAt`: the owner is on it now. */
  readonly active: boolean;
  /** The payment state access follows (`contractPaymentStatus`). */
  readonly paymentStatus: ReturnType<typeof contractPaymentStatus>;
  readonly invoices: ContractState['invoices'];
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly updatedBy: string;
}

export function contractView(ownerId: OwnerId, state: ContractState, now: Date): ContractView {
  const { terms } = state;
  return {
    ownerId,
    id: state.id,
    plan: terms.plan,
    limits: terms.limits,
    flags: terms.flags,
    seats: terms.seats,
    startsAt: terms.startsAt,
    endsAt: terms.endsAt,
    billing: terms.billing,
    invoicing: terms.invoicing ?? null,
    active: contractActive(state, now),
    paymentStatus: contractPaymentStatus(state, now),
    invoices: state.invoices,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    updatedBy: state.updatedBy,
  };
}

export interface SetOutcome {
  readonly contract: ContractView;
  /** False when the terms were already these (nothing written, nothing audited). */
  readonly changed: boolean;
  readonly created: boolean;
}

export interface Contracts {
  /** @throws BillingError `contract_not_found` */
  get(ownerId: OwnerId): Promise<ContractView>;
  /** Sets (or replaces) the owner's contract. `id` keeps a given identity (a revert); otherwise an unfinished contract keeps its id. */
  set(change: AdminChange & { readonly terms: ContractTerms; readonly id?: string }): Promise<SetOutcome>;
  /** Ends the owner's contract now (the row goes; the audit row keeps it). */
  end(change: AdminChange): Promise<{ readonly ended: boolean }>;
}

const sameTerms = (a: ContractTerms, b: ContractTerms) => stableJson(a) === stableJson(b);

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y)))
      : v,
  );
}

/** What numbers the periods of invoices already issued. */
const sameSchedule = (a: ContractTerms, b: ContractTerms) =>
  a.startsAt === b.startsAt && a.billing === b.billing && a.invoicing?.interval === b.invoicing?.interval;

const audited = (state: ContractState | undefined): AuditedContract =>
  state === undefined ? null : { id: state.id, terms: state.terms };

export function createContracts(deps: {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly catalog: Catalog;
  readonly clock: Clock;
}): Contracts {
  const { table, owners, catalog, clock } = deps;

  const lockMove = (snapshot: OwnerSnapshot, next: ContractState | undefined) =>
    lockMoveFor(table, catalog, snapshot, next);

  function auditOf(
    change: AdminChange,
    kind: 'contract_set' | 'contract_ended',
    at: string,
    before: ContractState | undefined,
    after: ContractState | undefined,
  ): TransactionAction {
    const entry: AuditEntry = {
      at,
      kind,
      actor: { kind: 'admin', id: change.actor },
      cause: { kind: 'admin', id: change.requestId },
      reason: change.reason,
      before: audited(before),
      after: audited(after),
      revertible: 'contract',
      revertOf: change.revertOf,
      details: { contractId: (after ?? before)?.id },
    };
    return auditAction(entry, change.requestId);
  }

  return {
    async get(ownerId) {
      const snapshot = await owners.read(ownerId);
      const contract = snapshot.contract?.state;
      if (contract === undefined)
        throw notFound('contract_not_found', `Owner ${ownerId} has no enterprise contract.`);
      return contractView(ownerId, contract, snapshot.readAt);
    },

    async set(change) {
      const { ownerId, terms } = change;
      // Listed for the invoicing timer before the contract exists (see CONTRACT_INDEX_PARTITION).
      if (terms.billing === 'stripe_invoice')
        await table.upsert(CONTRACT_INDEX_PARTITION, ownerId, { ownerId });
      return commit<SetOutcome>(
        table,
        ownerId,
        async () => {
          const snapshot = await owners.read(ownerId);
          const stored = snapshot.contract;
          const current = stored?.state;
          const now = clock.now();
          // An unfinished contract is edited in place (its invoices stay); after one ended, a new one starts.
          const continues =
            current !== undefined &&
            (change.id === undefined
              ? now.getTime() < Date.parse(current.terms.endsAt)
              : change.id === current.id);
          if (continues && current && sameTerms(current.terms, terms))
            return answer({ contract: contractView(ownerId, current, now), changed: false, created: false });
          // Issued invoices are numbered by period from `startsAt` at the interval: moving either would make
          // their periods mean other dates (and bill some twice). End the contract and set a new one instead.
          if (continues && current && current.invoices.length > 0 && !sameSchedule(current.terms, terms))
            throw conflict(
              'contract_invoiced',
              `Contract ${current.id} has invoices for its periods: startsAt, billing and the invoicing interval cannot change. End it (DELETE) and set a new contract.`,
            );
          const at = now.toISOString();
          const next: ContractState = {
            id: continues && current ? current.id : (change.id ?? `ct_${randomUUID().replaceAll('-', '')}`),
            terms,
            createdAt: continues && current ? current.createdAt : at,
            updatedAt: at,
            updatedBy: change.actor,
            invoices: continues && current ? current.invoices : [],
          };
          const actions: TransactionAction[] = [
            contractRowAction(snapshot, next),
            auditOf(change, 'contract_set', at, current, next),
            ...(await lockMove(snapshot, next)),
          ];
          return write(withVersion(snapshot, actions), () => ({
            contract: contractView(ownerId, next, now),
            changed: true,
            created: current === undefined,
          }));
        },
        { what: `setting the contract of ${ownerId}` },
      );
    },

    end(change) {
      const { ownerId } = change;
      return commit<{ readonly ended: boolean }>(
        table,
        ownerId,
        async () => {
          const snapshot = await owners.read(ownerId);
          const current = snapshot.contract?.state;
          if (current === undefined) return answer({ ended: false });
          const at = clock.now().toISOString();
          const actions: TransactionAction[] = [
            { kind: 'delete', rowKey: CONTRACT_ROW },
            auditOf(change, 'contract_ended', at, current, undefined),
            ...(await lockMove(snapshot, undefined)),
          ];
          return write(withVersion(snapshot, actions), () => ({ ended: true }));
        },
        { what: `ending the contract of ${ownerId}` },
      );
    },
  };
}

/**
 * Reverts an audited contract change (`POST /api/ops/audit/{id}/revert`): its `before` (a contract, kept
 * with its id so invoices already issued for its periods are found again rather than issued twice, or
 * none) is applied as a new admin change, audited with `revertOf`.
 */
export function contractRevertHandler(contracts: Contracts): RevertHandler {
  return {
    kind: 'contract',
    async revert({ ownerId, before, actor, reason, revertOf, requestId }) {
      if (ownerId === undefined)
        throw validationError(
          'owner_required',
          'A contract change is audited in its owner partition; name the owner.',
        );
      const parsed = auditedContractSchema.parse(before);
      const change = { ownerId, actor, reason, requestId, revertOf };
      if (parsed === null) await contracts.end(change);
      else await contracts.set({ ...change, terms: parsed.terms, id: parsed.id });
    },
  };
}
