import { type Counter, type Histogram, type Meter, type MeterProvider, metrics } from '@opentelemetry/api';
import { ATTR, SCOPE } from './names.js';

/**
 * The app's instruments, and one function per measurement so each call site is one line.
 *
 * Instruments are made from the global meter provider on first use and remade when the provider changes.
 * Unlike the tracer API, the metrics API has no proxy: an instrument taken before the SDK registers its
 * provider (function modules load before the app-start hook runs) would stay a no-op forever. With no
 * SDK started the provider is the API's no-op and every record costs one comparison.
 */
interface Instruments {
  readonly decisions: Counter;
  readonly wouldDeny: Counter;
  readonly consumeDuration: Histogram;
  readonly eventLag: Histogram;
  readonly redeliveries: Counter;
  readonly poisoned: Counter;
  readonly repairs: Counter;
}

let cached: { readonly provider: MeterProvider; readonly instruments: Instruments } | undefined;

function create(meter: Meter): Instruments {
  return {
    decisions: meter.createCounter('billing.decisions', {
      description: 'Entitlement decisions (checks and consumptions), by feature, reason and whether allowed',
      unit: '{decision}',
    }),
    wouldDeny: meter.createCounter('billing.decisions.would_deny', {
      description: 'Denials that monitor enforcement or a payment grace period let through',
      unit: '{decision}',
    }),
    consumeDuration: meter.createHistogram('billing.usage.consume.duration', {
      description: 'Time to answer a consumption, including its batch commit',
      unit: 'ms',
    }),
    eventLag: meter.createHistogram('billing.events.lag', {
      description: "From a Stripe event's creation to its application here",
      unit: 'ms',
      // Lag runs from under a second (a webhook straight through) to hours (an outage, a long redelivery).
      advice: {
        explicitBucketBoundaries: [
          250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, 21_600_000,
        ],
      },
    }),
    redeliveries: meter.createCounter('billing.events.redeliveries', {
      description: 'Queued Stripe events delivered again after a failed attempt',
      unit: '{delivery}',
    }),
    poisoned: meter.createCounter('billing.events.poisoned', {
      description: 'Queued Stripe events given up on (poison or dead-letter queue)',
      unit: '{event}',
    }),
    repairs: meter.createCounter('billing.reconciler.repairs', {
      description: 'Drift between Stripe and local state that the reconciler repaired',
      unit: '{repair}',
    }),
  };
}

function instruments(): Instruments {
  const provider = metrics.getMeterProvider();
  if (cached?.provider !== provider) cached = { provider, instruments: create(provider.getMeter(SCOPE)) };
  return cached.instruments;
}

export interface DecisionRecord {
  readonly feature: string;
  readonly reason: string;
  readonly allowed: boolean;
  readonly enforcement: string;
  /** Which entry point decided. */
  readonly source: 'check' | 'consume';
}

export function recordDecision(decision: DecisionRecord): void {
  instruments().decisions.add(1, {
    [ATTR.feature]: decision.feature,
    [ATTR.reason]: decision.reason,
    [ATTR.allowed]: decision.allowed,
    [ATTR.enforcement]: decision.enforcement,
    [ATTR.source]: decision.source,
  });
}

export function recordWouldDeny(decision: Omit<DecisionRecord, 'allowed'>): void {
  instruments().wouldDeny.add(1, {
    [ATTR.feature]: decision.feature,
    [ATTR.reason]: decision.reason,
    [ATTR.enforcement]: decision.enforcement,
    [ATTR.source]: decision.source,
  });
}

export function recordConsumeDuration(
  ms: number,
  consume: {
    readonly meter: string;
    readonly outcome: 'consumed' | 'denied' | 'error';
    readonly replayed: boolean;
  },
): void {
  instruments().consumeDuration.record(ms, {
    [ATTR.meter]: consume.meter,
    [ATTR.consumeOutcome]: consume.outcome,
    [ATTR.replayed]: consume.replayed,
  });
}

export function recordEventLag(ms: number, event: { readonly type: string; readonly outcome: string }): void {
  instruments().eventLag.record(Math.max(0, ms), {
    [ATTR.eventType]: event.type,
    [ATTR.eventOutcome]: event.outcome,
  });
}

export function recordRedelivery(event: { readonly type: string }): void {
  instruments().redeliveries.add(1, { [ATTR.eventType]: event.type });
}

/** For the processor (or the transport's poison handling) when it gives up on a message. */
export function recordPoisoned(event: { readonly type: string }): void {
  instruments().poisoned.add(1, { [ATTR.eventType]: event.type });
}

/** For the reconciler, once per repair it makes; `repair` names what was wrong (a short fixed word). */
export function recordReconcilerRepair(repair: string): void {
  instruments().repairs.add(1, { [ATTR.repair]: repair });
}
