import type Stripe from 'stripe';
import type { Metadata } from '../objects.js';
import type { MetadataParam } from '../params.js';

/* How a change is recorded: snapshots for its events, `previous_attributes`, and Stripe's metadata merge. */

/** An event captured at the moment of the change, published later in the order the flow wants. */
export interface Pending {
  readonly type: Stripe.Event.Type;
  readonly object: unknown;
  readonly previous: Record<string, unknown> | undefined;
}

export function snap(type: Stripe.Event.Type, object: unknown, previous?: Record<string, unknown>): Pending {
  return {
    type,
    object: structuredClone(object),
    previous: previous === undefined ? undefined : structuredClone(previous),
  };
}

/** The previous values of every top-level field that changed, as Stripe's `previous_attributes`. */
export function changedFields(before: object, after: object): Record<string, unknown> | undefined {
  const previous: Record<string, unknown> = {};
  const next = new Map(Object.entries(after));
  for (const [key, value] of Object.entries(before)) {
    if (JSON.stringify(value) !== JSON.stringify(next.get(key))) previous[key] = value;
  }
  return Object.keys(previous).length > 0 ? previous : undefined;
}

/** Stripe's metadata update: `''` clears everything, a key set to `''` is removed, others are set. */
export function mergeMetadata(current: Metadata, update: MetadataParam): Metadata {
  if (update === '') return {};
  const merged: Metadata = { ...current };
  for (const [key, value] of Object.entries(update)) {
    if (value === '') delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

export function freshMetadata(update: MetadataParam | undefined): Metadata {
  return update === undefined ? {} : mergeMetadata({}, update);
}
