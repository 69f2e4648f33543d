import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { type Attributes, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { type ChangeCause, withCause } from '../billing/feed/cause.js';
import { ATTR, SCOPE } from './names.js';

/** How a function is triggered; decides the span's kind and its `faas.trigger`. */
export type Trigger = 'http' | 'timer' | 'queue';

const SPAN_KIND: Readonly<Record<Trigger, SpanKind>> = {
  http: SpanKind.SERVER,
  timer: SpanKind.INTERNAL,
  queue: SpanKind.CONSUMER,
};
const CAUSE_KIND: Readonly<Record<Trigger, ChangeCause['kind']>> = {
  http: 'request',
  timer: 'timer',
  queue: 'queue',
};
/** The semantic conventions' `faas.trigger` values (a queue message is `pubsub`). */
const FAAS_TRIGGER: Readonly<Record<Trigger, string>> = { http: 'http', timer: 'timer', queue: 'pubsub' };

/**
 * Runs one function invocation inside its own active span, named after the function and carrying its
 * invocation id, so whatever the domain annotates (`attributes.ts`) lands on it. Under the Functions
 * host its parent is the host's invocation (the distro's pre-invocation hook makes the host's
 * `traceContext` the active context), so in Application Insights it sits under the host's request.
 * A throw marks the span failed, is logged once with the invocation and trace ids, and is rethrown
 * unchanged: retries and poison handling stay the trigger's. With no SDK started, the tracer is the
 * API's no-op and this adds a few object allocations per invocation.
 */
export function inInvocationSpan<R>(
  invocation: InvocationContext,
  trigger: Trigger,
  run: (span: Span) => Promise<R>,
  attributes: Attributes = {},
): Promise<R> {
  return trace.getTracer(SCOPE).startActiveSpan(
    invocation.functionName,
    {
      kind: SPAN_KIND[trigger],
      attributes: {
        [ATTR.functionName]: invocation.functionName,
        [ATTR.invocationId]: invocation.invocationId,
        [ATTR.trigger]: FAAS_TRIGGER[trigger],
        ...attributes,
      },
    },
    async (span) => {
      try {
        // Whatever this invocation changes names it as the cause in the entitlement feed.
        return await withCause(
          { kind: CAUSE_KIND[trigger], id: invocation.invocationId, source: invocation.functionName },
          () => run(span),
        );
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        span.recordException(error instanceof Error ? error : message);
        span.setStatus({ code: SpanStatusCode.ERROR, message });
        // One line of key=value pairs: readable in a console, and queryable in Application Insights.
        invocation.error(
          `invocation failed function=${invocation.functionName} invocationId=${invocation.invocationId} traceId=${span.spanContext().traceId} trigger=${trigger} error=${JSON.stringify(message)}`,
        );
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** A trigger handler (timer, queue) wrapped in its invocation span: `handler: traced('timer', ...)`. */
export function traced<T, R>(
  trigger: Trigger,
  handler: (input: T, invocation: InvocationContext) => Promise<R>,
): (input: T, invocation: InvocationContext) => Promise<R> {
  return (input, invocation) => inInvocationSpan(invocation, trigger, () => handler(input, invocation));
}

/**
 * An HTTP handler in its invocation span, with the route and the response status. Handlers answer errors
 * as problem responses rather than throwing, so a 5xx answer is what marks the span failed.
 */
export function tracedHttp(
  route: string,
  handler: (request: HttpRequest, invocation: InvocationContext) => Promise<HttpResponseInit>,
): (request: HttpRequest, invocation: InvocationContext) => Promise<HttpResponseInit> {
  return (request, invocation) =>
    inInvocationSpan(
      invocation,
      'http',
      async (span) => {
        const response = await handler(request, invocation);
        const status = response.status ?? 200;
        span.setAttribute(ATTR.httpStatus, status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        return response;
      },
      { [ATTR.httpMethod]: request.method, [ATTR.httpRoute]: route },
    );
}
