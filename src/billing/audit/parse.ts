import { z } from 'zod';
import { CorruptRowError, readChunkedJson } from '../owner/rows.js';
import type { EntityProps, EntityValue, StoredEntity } from '../store.js';
import {
  AUDIT_ACTOR_KINDS,
  AUDIT_CAUSE_KINDS,
  AUDIT_KEY_PREFIX,
  AUDIT_PREFIX,
  type AuditActorKind,
  type AuditCauseKind,
  RESERVED_AUDIT_PROPS,
  REVERTIBLE_KINDS,
  type RevertibleKind,
  STATE_PROP,
} from './entry.js';
import { encodeAuditId } from './ids.js';

/**
 * Reading audit rows, whatever shape they were written in. Two shapes exist:
 * - rows under `audit|n|` (`entry.ts`): parsed strictly, since one writer makes them;
 * - older rows (`audit|<ISO>|…`, `audit|duplicate|<sub>`), written by each module its own way before the
 *   shared shape: `actor` a bare name, no `actorKind`, `before`/`after` plain strings ('' for none, JSON
 *   or a number otherwise), no `causeId` on some. They are read leniently: an old row must never fail a
 *   listing, so missing facts are inferred (the actor's kind from the cause) rather than refused.
 * A row that fits neither (no instant, an unknown cause kind) is corrupt and reported with its key.
 */

/** One audit row as the API shows it. */
export interface AuditRecord {
  readonly id: string;
  /** `null` for a change audited in the global partition. */
  readonly ownerId: string | null;
  readonly at: string;
  readonly kind: string;
  readonly actor: { readonly kind: AuditActorKind; readonly id: string };
  readonly cause: { readonly kind: AuditCauseKind; readonly id: string; readonly type?: string };
  readonly reason?: string;
  readonly before: unknown;
  readonly after: unknown;
  readonly revertible?: RevertibleKind;
  readonly revertOf?: string;
  readonly details: Readonly<Record<string, EntityValue>>;
  /** Written before the shared shape; some facts were inferred. */
  readonly legacy?: true;
}

const optionalText = z.string().optional();

const currentSchema = z.object({
  at: z.iso.datetime({ offset: true }),
  kind: z.string().min(1),
  actorKind: z.enum(AUDIT_ACTOR_KINDS),
  actor: z.string(),
  causeKind: z.enum(AUDIT_CAUSE_KINDS),
  causeId: z.string(),
  causeType: optionalText,
  reason: optionalText,
  revertible: z.enum(REVERTIBLE_KINDS).optional(),
  revertOf: optionalText,
});

const legacySchema = z.object({
  at: z.string().refine((at) => !Number.isNaN(Date.parse(at)), 'not a date'),
  kind: z.string().optional(),
  actor: z.string().optional(),
  causeKind: z.enum(['event', 'action', 'reconcile', 'seat_sync', 'timer', 'admin']),
  causeId: z.string().optional(),
  causeType: z.string().optional(),
});

/** Whether a row key is an audit row's (either shape); other rows under `audit|` do not exist. */
export const isAuditRowKey = (rowKey: string) => rowKey.startsWith(AUDIT_PREFIX);

/** The owner a partition stands for, `null` for the global one. */
export type PartitionOwner = (partitionKey: string) => string | null;

/** @throws CorruptRowError naming the row when it fits neither shape */
export function parseAuditRow(row: StoredEntity, ownerOf: PartitionOwner): AuditRecord {
  const id = encodeAuditId(row.partitionKey, row.rowKey);
  const ownerId = ownerOf(row.partitionKey);
  const corrupt = (detail: string) => new CorruptRowError(row.partitionKey, row.rowKey, detail);
  if (row.rowKey.startsWith(AUDIT_KEY_PREFIX)) {
    const parsed = currentSchema.safeParse(row.props);
    if (!parsed.success) throw corrupt(z.prettifyError(parsed.error));
    const p = parsed.data;
    let before: unknown;
    let after: unknown;
    try {
      before = readChunkedJson(row.props, 'before') ?? null;
      after = readChunkedJson(row.props, 'after') ?? null;
    } catch (error) {
      throw corrupt(`before/after is not JSON: ${String(error)}`);
    }
    return {
      id,
      ownerId,
      at: p.at,
      kind: p.kind,
      actor: { kind: p.actorKind, id: p.actor },
      cause: {
        kind: p.causeKind,
        id: p.causeId,
        ...(p.causeType === undefined ? {} : { type: p.causeType }),
      },
      ...(p.reason === undefined ? {} : { reason: p.reason }),
      before,
      after,
      ...(p.revertible === undefined ? {} : { revertible: p.revertible }),
      ...(p.revertOf === undefined ? {} : { revertOf: p.revertOf }),
      details: detailsOf(row.props),
    };
  }
  const parsed = legacySchema.safeParse(row.props);
  if (!parsed.success) throw corrupt(z.prettifyError(parsed.error));
  const p = parsed.data;
  return {
    id,
    ownerId,
    at: new Date(p.at).toISOString(),
    kind: p.kind ?? 'unknown',
    actor: legacyActor(p.causeKind, p.actor),
    cause: {
      kind: p.causeKind,
      // Seat-cap and seat-sync rows named no cause id; their key's last part did.
      id: p.causeId ?? row.rowKey.split('|').at(-1) ?? '',
      ...(p.causeType === undefined ? {} : { type: p.causeType }),
    },
    before: legacyState(row.props.before),
    after: legacyState(row.props.after),
    details: detailsOf(row.props),
    legacy: true,
  };
}

/** Old rows said only a name; the cause says which kind of actor could have made it. */
function legacyActor(cause: AuditCauseKind, actor: string | undefined): AuditRecord['actor'] {
  switch (cause) {
    case 'event':
      return { kind: 'stripe', id: 'stripe' };
    case 'reconcile':
      return { kind: 'reconciler', id: actor ?? 'reconciler' };
    case 'seat_sync':
      return actor === 'admin'
        ? { kind: 'admin', id: 'admin' }
        : { kind: 'seat_sync', id: actor ?? 'seat_sync' };
    case 'timer':
      return { kind: 'timer', id: actor ?? 'timer' };
    case 'admin':
      return { kind: 'admin', id: actor ?? 'admin' };
    case 'action':
      return { kind: 'user', id: actor ?? '' };
  }
}

/** '' was "none"; JSON where it parses (states, numbers), the text itself otherwise. */
function legacyState(value: EntityValue | undefined): unknown {
  if (value === undefined || value === '') return null;
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function detailsOf(props: EntityProps): Record<string, EntityValue> {
  const details: Record<string, EntityValue> = {};
  for (const [name, value] of Object.entries(props)) {
    if (!RESERVED_AUDIT_PROPS.has(name) && !STATE_PROP.test(name)) details[name] = value;
  }
  return details;
}
