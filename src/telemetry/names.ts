/**
 * Attribute keys, in one place so spans, metrics and the README agree. `faas.*`, `http.*` and
 * `messaging.*` follow the OpenTelemetry semantic conventions; `billing.*` are ours.
 */
export const ATTR = {
  invocationId: 'faas.invocation_id',
  functionName: 'faas.name',
  trigger: 'faas.trigger',
  httpMethod: 'http.request.method',
  httpRoute: 'http.route',
  httpStatus: 'http.response.status_code',
  owner: 'billing.owner.id',
  feature: 'billing.feature',
  reason: 'billing.decision.reason',
  allowed: 'billing.decision.allowed',
  enforcement: 'billing.enforcement',
  wouldDeny: 'billing.decision.would_deny',
  source: 'billing.decision.source',
  meter: 'billing.meter',
  consumeOutcome: 'billing.consume.outcome',
  replayed: 'billing.consume.replayed',
  eventId: 'stripe.event.id',
  eventType: 'stripe.event.type',
  attempt: 'billing.event.attempt',
  eventOutcome: 'billing.event.outcome',
  repair: 'billing.reconciler.repair',
} as const;

/** The instrumentation scope of every span and instrument this app makes. */
export const SCOPE = 'billing-backend';
