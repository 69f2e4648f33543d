import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventRefSchema } from '../../src/billing/event-ref.js';
import { InvocationContext } from '../../src/http/functions-runtime.js';
import { observeEvent } from '../../src/telemetry/events.js';
import { inInvocationSpan } from '../../src/telemetry/invocation.js';
import { recordPoisoned, recordReconcilerRepair } from '../../src/telemetry/metrics.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * What the app emits, read from in-memory exporters registered as the global providers (where Azure
 * Monitor's would be in production): one span per invocation with the billing attributes, and the metrics.
 */
const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
// Exports only when the test flushes it.
const reader = new PeriodicExportingMetricReader({
  exporter: metricExporter,
  exportIntervalMillis: 3_600_000,
});
const meterProvider = new MeterProvider({ readers: [reader] });

interface Point {
  readonly attributes: Record<string, unknown>;
  readonly value: number;
  readonly count: number;
}

/** The points of one metric as last exported; `value` is a sum, or a histogram's sum with its `count`. */
async function points(name: string): Promise<Point[]> {
  await reader.forceFlush();
  const latest = metricExporter.getMetrics().at(-1);
  const metric = latest?.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  if (!metric) return [];
  if (metric.dataPointType === DataPointType.HISTOGRAM) {
    return metric.dataPoints.map((p) => ({
      attributes: p.attributes,
      value: p.value.sum ?? 0,
      count: p.value.count,
    }));
  }
  if (metric.dataPointType === DataPointType.SUM || metric.dataPointType === DataPointType.GAUGE) {
    return metric.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value, count: 1 }));
  }
  return [];
}

function spanNamed(name: string): ReadableSpan {
  const found = spans.getFinishedSpans().filter((s) => s.name === name);
  expect(found, `spans named ${name}`).toHaveLength(1);
  const [span] = found;
  if (!span) throw new Error(`no span ${name}`);
  return span;
}

describe('telemetry: spans and metrics of a check, a consume and an event', () => {
  let host: TestHost;
  let service: string;

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
    // No worker and no webhook deliveries: the one event the test applies is applied by the test.
    host = await startTestHost({
      worker: false,
      deliverWebhooks: false,
      env: { ENFORCEMENT_OVERRIDES: 'ai_nodes=monitor' },
    });
    service = await host.serviceToken();
    await host.call('PUT', '/api/directory/orgs/o-tel', { token: service, body: { creatorId: 'u-tel' } });
    await host.call('PUT', '/api/directory/workflows/wf-tel', {
      token: service,
      body: { workspace: { orgId: 'o-tel' }, nodeCount: 2 },
    });
    spans.reset();
  });

  afterAll(async () => {
    await host?.close();
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
    trace.disable();
    metrics.disable();
    context.disable();
    propagation.disable();
  });

  it('a check: its span names the function, invocation, owner, feature and decision; decisions are counted', async () => {
    const allowed = await host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { workflowId: 'wf-tel' }, feature: 'executions', quantity: 1 },
    });
    expect(allowed.status, allowed.text).toBe(200);
    const span = spanNamed('entitlementsCheck');
    expect(span.attributes).toMatchObject({
      'faas.name': 'entitlementsCheck',
      'faas.trigger': 'http',
      'http.route': 'entitlements/check',
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'billing.owner.id': 'u-tel',
      'billing.feature': 'executions',
      'billing.decision.reason': 'within_limit',
      'billing.decision.allowed': true,
      'billing.decision.would_deny': false,
    });
    expect(span.attributes['faas.invocation_id']).toEqual(expect.any(String));

    // ai_nodes is not in the free plan, and monitored: allowed, but a would-be denial.
    spans.reset();
    const monitored = await host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { workflowId: 'wf-tel' }, feature: 'ai_nodes' },
    });
    expect(monitored.body).toMatchObject({ allowed: true, reason: 'feature_not_in_plan' });
    expect(spanNamed('entitlementsCheck').attributes).toMatchObject({
      'billing.feature': 'ai_nodes',
      'billing.decision.reason': 'feature_not_in_plan',
      'billing.decision.allowed': true,
      'billing.enforcement': 'monitor',
      'billing.decision.would_deny': true,
    });

    const decisions = await points('billing.decisions');
    expect(decisions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          attributes: expect.objectContaining({
            'billing.feature': 'executions',
            'billing.decision.reason': 'within_limit',
            'billing.decision.allowed': true,
            'billing.decision.source': 'check',
          }),
          value: 1,
        }),
        expect.objectContaining({
          attributes: expect.objectContaining({
            'billing.feature': 'ai_nodes',
            'billing.decision.reason': 'feature_not_in_plan',
            'billing.enforcement': 'monitor',
          }),
          value: 1,
        }),
      ]),
    );
    expect(await points('billing.decisions.would_deny')).toEqual([
      expect.objectContaining({
        attributes: expect.objectContaining({
          'billing.feature': 'ai_nodes',
          'billing.decision.reason': 'feature_not_in_plan',
          'billing.decision.source': 'check',
        }),
        value: 1,
      }),
    ]);
  });

  it('a consume: its span carries the decision; latency is recorded, and a replay is timed but not counted again', async () => {
    spans.reset();
    const body = {
      subject: { workflowId: 'wf-tel' },
      meter: 'executions',
      quantity: 2,
      idempotencyKey: 'tel-run-1',
    };
    const consumed = await host.call('POST', '/api/usage/consume', { token: service, body });
    expect(consumed.status, consumed.text).toBe(200);
    expect(spanNamed('usageConsume').attributes).toMatchObject({
      'faas.trigger': 'http',
      'http.response.status_code': 200,
      'billing.owner.id': 'u-tel',
      'billing.feature': 'executions',
      'billing.meter': 'executions',
      'billing.decision.reason': 'within_limit',
      'billing.decision.allowed': true,
      'billing.decision.source': 'consume',
      'billing.consume.replayed': false,
    });
    await host.call('POST', '/api/usage/consume', { token: service, body });

    const latency = await points('billing.usage.consume.duration');
    const fresh = latency.find((p) => p.attributes['billing.consume.replayed'] === false);
    const replayed = latency.find((p) => p.attributes['billing.consume.replayed'] === true);
    expect(fresh).toMatchObject({
      count: 1,
      attributes: { 'billing.meter': 'executions', 'billing.consume.outcome': 'consumed' },
    });
    expect(fresh?.value).toBeGreaterThan(0);
    expect(replayed?.count).toBe(1);
    const consumeDecisions = (await points('billing.decisions')).filter(
      (p) => p.attributes['billing.decision.source'] === 'consume',
    );
    expect(consumeDecisions).toEqual([
      expect.objectContaining({
        attributes: expect.objectContaining({
          'billing.feature': 'executions',
          'billing.decision.reason': 'within_limit',
        }),
        value: 1,
      }),
    ]);
  });

  it('an event: its span carries the Stripe event id, type, attempt and owner; redelivery and lag are recorded', async () => {
    const owner = await token({ sub: 'u-tel-pay' });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    const { sessionId } = checkout.body as { sessionId: string };
    const paid = await fetch(`${host.sandbox?.url}/checkout/${sessionId}/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: '{}',
    });
    expect(paid.status, await paid.text()).toBeLessThan(300);
    const listed = await host.services.payments.listEvents({
      since: new Date(0),
      types: ['customer.subscription.created'],
      cursor: null,
      limit: 10,
    });
    const event = listed.items[0];
    if (!event) throw new Error('the sandbox made no customer.subscription.created event');
    // As the queue carries it, on its second delivery.
    const ref = eventRefSchema.parse({
      v: 2,
      eventId: event.id,
      type: event.type,
      objectId: event.objectId,
      customerId: event.customerId,
      attempt: 1,
    });

    spans.reset();
    const invocation = new InvocationContext({
      functionName: 'processBillingEvent',
      invocationId: 'inv-event-1',
    });
    const appliedAt = event.created.getTime() + 1_500;
    const outcome = await inInvocationSpan(invocation, 'queue', () =>
      observeEvent(
        { ...ref, created: Math.floor(event.created.getTime() / 1000) },
        () => host.services.events.process(ref),
        () => appliedAt,
      ),
    );
    expect(outcome).toMatchObject({ kind: 'applied', ownerId: 'u-tel-pay' });

    expect(spanNamed('processBillingEvent').attributes).toMatchObject({
      'faas.name': 'processBillingEvent',
      'faas.invocation_id': 'inv-event-1',
      'faas.trigger': 'pubsub',
      'stripe.event.id': event.id,
      'stripe.event.type': 'customer.subscription.created',
      'billing.event.attempt': 1,
      'billing.event.outcome': 'applied',
      'billing.owner.id': 'u-tel-pay',
    });
    expect(await points('billing.events.redeliveries')).toEqual([
      expect.objectContaining({
        attributes: { 'stripe.event.type': 'customer.subscription.created' },
        value: 1,
      }),
    ]);
    const [lag] = await points('billing.events.lag');
    expect(lag).toMatchObject({
      count: 1,
      attributes: {
        'stripe.event.type': 'customer.subscription.created',
        'billing.event.outcome': 'applied',
      },
    });
    // Stripe's `created` is in whole seconds, so the lag is 1.5 s plus what the truncation dropped.
    expect(lag?.value).toBeGreaterThanOrEqual(1_500);
    expect(lag?.value).toBeLessThan(2_500);

    // The same event again (a duplicate delivery) is no application: no second lag.
    await observeEvent(
      { ...ref, created: Math.floor(event.created.getTime() / 1000) },
      () => host.services.events.process(ref),
      () => appliedAt,
    );
    expect((await points('billing.events.lag'))[0]?.count).toBe(1);
  });

  it('a failing invocation: its span is marked failed and the error passes through', async () => {
    spans.reset();
    const logged: string[] = [];
    const invocation = new InvocationContext({
      functionName: 'usageRollover',
      invocationId: 'inv-fail-1',
      logHandler: (_level, ...args) => logged.push(args.map(String).join(' ')),
    });
    await expect(
      inInvocationSpan(invocation, 'timer', async () => {
        throw new Error('storage unavailable');
      }),
    ).rejects.toThrow('storage unavailable');
    const span = spanNamed('usageRollover');
    expect(span.status).toMatchObject({ code: 2, message: 'storage unavailable' });
    expect(span.events.map((e) => e.name)).toContain('exception');
    expect(logged.join('\n')).toContain('invocationId=inv-fail-1');
  });

  it('poisoned messages and reconciler repairs are counted', async () => {
    recordPoisoned({ type: 'invoice.paid' });
    recordReconcilerRepair('subscription_state');
    expect(await points('billing.events.poisoned')).toEqual([
      expect.objectContaining({ attributes: { 'stripe.event.type': 'invoice.paid' }, value: 1 }),
    ]);
    expect(await points('billing.reconciler.repairs')).toEqual([
      expect.objectContaining({
        attributes: { 'billing.reconciler.repair': 'subscription_state' },
        value: 1,
      }),
    ]);
  });
});
