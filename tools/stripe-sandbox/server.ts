import type http from 'node:http';
import type { z } from 'zod';
import type { Engine, RequestContext } from './engine/index.js';
import { fromZodError, invalidRequest, SandboxError } from './errors.js';
import { applyExpansions } from './expand.js';
import { decodeForm, FormDecodeError, type FormObject } from './form.js';
import { checkoutPage, errorPage, invoicePage, paidPage, portalPage } from './pages.js';
import * as params from './params.js';
import { ids, list, type WireList } from './wire.js';

/** Requests above this are refused before they are buffered. */
const MAX_BODY_BYTES = 1024 * 1024;

export interface ServerDeps {
  readonly engine: Engine;
  readonly apiVersion: string;
  readonly webhooks: {
    url(): string | undefined;
    setUrl(url: string | undefined): void;
    enabled(): boolean;
    setEnabled(enabled: boolean): void;
    deliveries(): unknown;
  };
}

interface Fault {
  readonly method: string;
  readonly pathPrefix: string;
  readonly status: 400 | 429 | 500 | 503;
  /** Failures left; null when only `until` bounds the fault. */
  remaining: number | null;
  /** Until when it fails (ms since the epoch, on the named clock); null when only `remaining` does. */
  readonly until: { readonly clock: 'real' | 'sandbox'; readonly atMs: number } | null;
}

interface StoredResponse {
  readonly endpoint: string;
  readonly body: string;
  readonly status: number;
  readonly payload: string;
}

interface ApiCall {
  readonly params: readonly string[];
  readonly query: FormObject;
  readonly body: FormObject;
  readonly ctx: RequestContext;
}

interface ApiRoute {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly pattern: RegExp;
  readonly handle: (call: ApiCall) => unknown;
}

interface Reply {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body: string;
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(value, null, 2),
  };
}

function html(status: number, body: string): Reply {
  return { status, headers: { 'content-type': 'text/html; charset=utf-8' }, body };
}

function errorReply(error: SandboxError, headers: Record<string, string> = {}): Reply {
  return json(error.status, error.body(), headers);
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (!result.success) throw fromZodError(result.error);
  return result.data;
}

function segment(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Newest-first pagination with `limit`, `starting_after` and `ending_before`, as Stripe's list endpoints. */
function paginate<T extends { id: string }>(
  items: readonly T[],
  page: {
    limit?: number | undefined;
    starting_after?: string | undefined;
    ending_before?: string | undefined;
  },
  url: string,
): WireList<T> {
  const limit = page.limit ?? 10;
  if (page.starting_after !== undefined) {
    const index = items.findIndex((item) => item.id === page.starting_after);
    if (index === -1)
      throw invalidRequest(`No such object: '${page.starting_after}'`, 'starting_after', 'resource_missing');
    const slice = items.slice(index + 1, index + 1 + limit);
    return list(slice, url, index + 1 + limit < items.length);
  }
  if (page.ending_before !== undefined) {
    const index = items.findIndex((item) => item.id === page.ending_before);
    if (index === -1)
      throw invalidRequest(`No such object: '${page.ending_before}'`, 'ending_before', 'resource_missing');
    const from = Math.max(0, index - limit);
    return list(items.slice(from, index), url, from > 0);
  }
  return list(items.slice(0, limit), url, items.length > limit);
}

/**
 * The sandbox's HTTP surface: Stripe's `/v1` endpoints (form-encoded, Bearer auth, idempotency keys,
 * `expand[]`, Stripe's error format), the hosted Checkout and portal pages, and the `/_sandbox`
 * control API (JSON, no auth) that moves the clock, flags cards and injects faults.
 */
export function createRequestListener(deps: ServerDeps): http.RequestListener {
  const { engine } = deps;
  const idempotency = new Map<string, StoredResponse>();
  const faults: Fault[] = [];
  const expand = (value: unknown, paths: readonly string[] | undefined) =>
    applyExpansions(value, paths, engine.lookup);

  const routes: ApiRoute[] = [
    {
      method: 'POST',
      pattern: /^\/v1\/customers$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.customerCreate, body);
        return expand(engine.createCustomer(p, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/customers\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.customer(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/products\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.product(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/prices$/,
      handle: ({ query }) => {
        const p = parse(params.priceList, query);
        const keys = p.lookup_keys === undefined ? undefined : new Set(p.lookup_keys);
        const found = engine
          .prices()
          .filter(
            (price) =>
              (p.active === undefined || price.active === p.active) &&
              (p.type === undefined || price.type === p.type) &&
              (p.product === undefined || price.product === p.product) &&
              (p.currency === undefined || price.currency === p.currency.toLowerCase()) &&
              (keys === undefined || (price.lookup_key !== null && keys.has(price.lookup_key))),
          );
        return expand(paginate(found, p, '/v1/prices'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/prices\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.price(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/checkout\/sessions$/,
      handle: ({ body }) => {
        const p = parse(params.checkoutCreate, body);
        return expand(engine.createCheckoutSession(p), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/checkout\/sessions$/,
      handle: ({ query }) => {
        const p = parse(params.checkoutList, query);
        const found = engine
          .sessions()
          .filter(
            (session) =>
              (p.customer === undefined || session.customer === p.customer) &&
              (p.payment_intent === undefined || session.payment_intent === p.payment_intent) &&
              (p.subscription === undefined || session.subscription === p.subscription) &&
              (p.status === undefined || session.status === p.status) &&
              params.inRange(session.created, p.created),
          );
        return expand(paginate(found, p, '/v1/checkout/sessions'), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/checkout\/sessions\/([^/]+)\/expire$/,
      handle: ({ params: [id = ''], body, ctx }) =>
        expand(engine.expireSession(id, ctx), parse(params.retrieve, body).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/checkout\/sessions\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.session(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/billing_portal\/sessions$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.portalCreate, body);
        return expand(engine.createPortalSession(p, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/subscriptions$/,
      handle: ({ query }) => {
        const p = parse(params.subscriptionList, query);
        const status = p.status;
        const found = engine.subscriptions().filter((sub) => {
          if (p.customer !== undefined && sub.customer !== p.customer) return false;
          if (p.price !== undefined && !sub.items.data.some((item) => item.price.id === p.price))
            return false;
          if (status === 'all') return true;
          if (status === undefined) return sub.status !== 'canceled' && sub.status !== 'incomplete_expired';
          if (status === 'ended') return sub.status === 'canceled' || sub.status === 'incomplete_expired';
          return sub.status === status;
        });
        return expand(paginate(found, p, '/v1/subscriptions'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/subscriptions\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.subscription(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/subscriptions\/([^/]+)$/,
      handle: ({ params: [id = ''], body, ctx }) => {
        const p = parse(params.subscriptionUpdate, body);
        return expand(engine.updateSubscription(id, p, ctx), p.expand);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/subscriptions\/([^/]+)$/,
      handle: ({ params: [id = ''], query, body, ctx }) => {
        const p = parse(params.subscriptionCancel, { ...query, ...body });
        return expand(engine.cancelSubscription(id, p, ctx), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/subscription_schedules$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.scheduleCreate, body);
        return expand(engine.createSchedule(p, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/subscription_schedules\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.schedule(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/subscription_schedules\/([^/]+)$/,
      handle: ({ params: [id = ''], body, ctx }) => {
        const p = parse(params.scheduleUpdate, body);
        return expand(engine.updateSchedule(id, p, ctx), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/subscription_schedules\/([^/]+)\/release$/,
      handle: ({ params: [id = ''], body, ctx }) => {
        const p = parse(params.scheduleRelease, body);
        return expand(engine.releaseSchedule(id, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoices$/,
      handle: ({ query }) => {
        const p = parse(params.invoiceList, query);
        const found = engine
          .invoices()
          .filter(
            (inv) =>
              (p.customer === undefined || inv.customer === p.customer) &&
              (p.subscription === undefined ||
                inv.parent?.subscription_details?.subscription === p.subscription) &&
              (p.status === undefined || inv.status === p.status),
          );
        return expand(paginate(found, p, '/v1/invoices'), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoices\/create_preview$/,
      handle: ({ body }) => {
        const p = parse(params.invoicePreview, body);
        return expand(engine.previewInvoice(p), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoices$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.invoiceCreate, body);
        return expand(engine.createInvoice(p, ctx), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoices\/([^/]+)\/finalize$/,
      handle: ({ params: [id = ''], body, ctx }) => {
        const p = parse(params.invoiceFinalize, body);
        return expand(engine.finalizeInvoice(id, p, ctx), p.expand);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoiceitems$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.invoiceItemCreate, body);
        return expand(engine.createInvoiceItem(p, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoices\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.invoice(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/events$/,
      handle: ({ query }) => {
        const p = parse(params.eventList, query);
        const types = [...(p.types ?? []), ...(p.type !== undefined ? [p.type] : [])];
        const matches = (type: string) =>
          types.length === 0 ||
          types.some((wanted) =>
            wanted.endsWith('.*') ? type.startsWith(wanted.slice(0, -1)) : type === wanted,
          );
        const found = [...engine.events()]
          .reverse()
          .filter((event) => matches(event.type) && params.inRange(event.created, p.created));
        return expand(paginate(found, p, '/v1/events'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoice_payments$/,
      handle: ({ query }) => {
        const p = parse(params.invoicePaymentList, query);
        const found = engine
          .invoicePayments()
          .filter(
            (payment) =>
              (p.invoice === undefined || payment.invoice === p.invoice) &&
              (p.status === undefined || payment.status === p.status) &&
              params.inRange(payment.created, p.created),
          );
        return expand(paginate(found, p, '/v1/invoice_payments'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/payment_intents\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.paymentIntent(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/charges\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.charge(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/refunds$/,
      handle: ({ body, ctx }) => {
        const p = parse(params.refundCreate, body);
        return expand(engine.createRefund(p, ctx), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/refunds$/,
      handle: ({ query }) => {
        const p = parse(params.refundList, query);
        const found = engine
          .refunds()
          .filter(
            (refund) =>
              (p.charge === undefined || refund.charge === p.charge) &&
              (p.payment_intent === undefined || refund.payment_intent === p.payment_intent) &&
              params.inRange(refund.created, p.created),
          );
        return expand(paginate(found, p, '/v1/refunds'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/disputes$/,
      handle: ({ query }) => {
        const p = parse(params.disputeList, query);
        const found = engine
          .disputes()
          .filter(
            (dispute) =>
              (p.charge === undefined || dispute.charge === p.charge) &&
              (p.payment_intent === undefined || dispute.payment_intent === p.payment_intent) &&
              params.inRange(dispute.created, p.created),
          );
        return expand(paginate(found, p, '/v1/disputes'), p.expand);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/disputes\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.dispute(id), parse(params.retrieve, query).expand),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/events\/([^/]+)$/,
      handle: ({ params: [id = ''], query }) =>
        expand(engine.event(id), parse(params.retrieve, query).expand),
    },
  ];

  function authenticate(header: string | undefined): SandboxError | undefined {
    if (!header) {
      return new SandboxError(
        401,
        'invalid_request_error',
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        { replayable: false },
      );
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    const key = match?.[1];
    if (!key || !/^sk_test_\w+$/.test(key)) {
      const shown = key
        ? `${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}`
        : '';
      return new SandboxError(
        401,
        'invalid_request_error',
        key
          ? `Invalid API Key provided: ${shown}. The sandbox accepts test-mode secret keys (sk_test_...).`
          : 'Invalid Authorization header: use Bearer auth with a test-mode secret key (sk_test_...).',
        { replayable: false },
      );
    }
    return undefined;
  }

  const clockMs = (clock: 'real' | 'sandbox') => (clock === 'real' ? Date.now() : engine.now() * 1000);

  function takeFault(method: string, path: string): SandboxError | undefined {
    // Faults whose time is up are dropped first, so `GET /_sandbox/faults` shows only live ones.
    for (let i = faults.length - 1; i >= 0; i--) {
      const until = faults[i]?.until;
      if (until && clockMs(until.clock) >= until.atMs) faults.splice(i, 1);
    }
    const index = faults.findIndex(
      (f) => (f.method === '*' || f.method === method) && path.startsWith(f.pathPrefix),
    );
    const fault = index === -1 ? undefined : faults[index];
    if (!fault) return undefined;
    if (fault.remaining !== null) {
      fault.remaining -= 1;
      if (fault.remaining === 0) faults.splice(index, 1);
    }
    const replayable = { replayable: false } as const;
    switch (fault.status) {
      case 429:
        return new SandboxError(
          429,
          'invalid_request_error',
          'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits. (sandbox fault)',
          { code: 'rate_limit', ...replayable },
        );
      case 400:
        return new SandboxError(
          400,
          'invalid_request_error',
          'Injected invalid request (sandbox fault).',
          replayable,
        );
      default:
        return new SandboxError(
          fault.status,
          'api_error',
          'An unknown error occurred while processing your request (sandbox fault).',
          replayable,
        );
    }
  }

  function handleApi(
    req: http.IncomingMessage,
    method: string,
    url: URL,
    rawBody: string,
    requestId: string,
  ): Reply {
    const path = url.pathname.replace(/\/+$/, '');
    const matching = routes
      .map((route) => ({ route, match: route.pattern.exec(path) }))
      .filter((x): x is { route: ApiRoute; match: RegExpExecArray } => x.match !== null);
    const chosen = matching.find((x) => x.route.method === method);
    if (!chosen) {
      return errorReply(
        new SandboxError(
          404,
          'invalid_request_error',
          `Unrecognized request URL (${method}: ${path}). The local Stripe sandbox implements only the endpoints the billing backend uses.`,
        ),
      );
    }
    const authError = authenticate(req.headers.authorization);
    if (authError) return errorReply(authError);
    const version = req.headers['stripe-version'];
    if (typeof version === 'string' && version !== deps.apiVersion) {
      return errorReply(
        invalidRequest(
          `This sandbox renders API version ${deps.apiVersion} only; the request asked for ${version}. Pin the SDK to ${deps.apiVersion}.`,
        ),
      );
    }
    const fault = takeFault(method, path);
    if (fault) return errorReply(fault);

    const idempotencyKey =
      method === 'POST' && typeof req.headers['idempotency-key'] === 'string'
        ? req.headers['idempotency-key']
        : null;
    const echo: Record<string, string> = idempotencyKey !== null ? { 'idempotency-key': idempotencyKey } : {};
    const endpoint = `${method} ${path}`;
    if (idempotencyKey !== null) {
      const stored = idempotency.get(idempotencyKey);
      if (stored) {
        if (stored.endpoint !== endpoint) {
          return errorReply(
            new SandboxError(
              400,
              'idempotency_error',
              `Keys for idempotent requests can only be used for the same endpoint they were first used for ('${stored.endpoint}' vs '${endpoint}'). Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
              { replayable: false },
            ),
            echo,
          );
        }
        if (stored.body !== rawBody) {
          return errorReply(
            new SandboxError(
              400,
              'idempotency_error',
              `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
              { replayable: false },
            ),
            echo,
          );
        }
        return {
          status: stored.status,
          headers: {
            'content-type': 'application/json; charset=utf-8',
            'idempotent-replayed': 'true',
            ...echo,
          },
          body: stored.payload,
        };
      }
    }

    let reply: Reply;
    let replayable = true;
    try {
      if (method === 'POST' && rawBody !== '') {
        const type = req.headers['content-type'] ?? '';
        if (!/^application\/x-www-form-urlencoded/i.test(type)) {
          throw new SandboxError(
            400,
            'invalid_request_error',
            `Invalid request: unsupported Content-Type ${type || '(none)'}. Send application/x-www-form-urlencoded, as the Stripe SDK does.`,
            { replayable: false },
          );
        }
      }
      const call: ApiCall = {
        params: chosen.match.slice(1).map(segment),
        query: decodeForm(url.search.slice(1)),
        body: method === 'GET' ? {} : decodeForm(rawBody),
        ctx: { requestId, idempotencyKey },
      };
      reply = json(200, chosen.route.handle(call), echo);
    } catch (error) {
      if (error instanceof SandboxError) {
        replayable = error.replayable;
        reply = errorReply(error, echo);
      } else if (error instanceof FormDecodeError) {
        replayable = false;
        reply = errorReply(invalidRequest(error.message, error.param), echo);
      } else {
        throw error;
      }
    }
    if (idempotencyKey !== null && replayable) {
      idempotency.set(idempotencyKey, { endpoint, body: rawBody, status: reply.status, payload: reply.body });
    }
    return reply;
  }

  function wantsJson(req: http.IncomingMessage): boolean {
    return /application\/json/i.test(req.headers.accept ?? '');
  }

  function handlePages(req: http.IncomingMessage, method: string, url: URL): Reply | undefined {
    const path = url.pathname;
    let match = /^\/checkout\/([^/]+)$/.exec(path);
    if (match && method === 'GET') {
      const id = segment(match[1] ?? '');
      try {
        return html(200, checkoutPage(engine.session(id), checkoutLines(id)));
      } catch (error) {
        if (error instanceof SandboxError) return html(error.status, errorPage('Checkout', error.message));
        throw error;
      }
    }
    match = /^\/checkout\/([^/]+)\/pay$/.exec(path);
    if (match && method === 'POST') {
      const id = segment(match[1] ?? '');
      try {
        const session = engine.payCheckout(id);
        if (wantsJson(req)) return json(200, { session });
        if (session.success_url) {
          return {
            status: 303,
            headers: { location: session.success_url.replaceAll('{CHECKOUT_SESSION_ID}', session.id) },
            body: '',
          };
        }
        return html(200, paidPage(session));
      } catch (error) {
        if (!(error instanceof SandboxError)) throw error;
        if (wantsJson(req)) return errorReply(error);
        if (error.status === 404) return html(404, errorPage('Checkout', error.message));
        return html(error.status, checkoutPage(engine.session(id), checkoutLines(id), error.message));
      }
    }
    match = /^\/portal\/([^/]+)$/.exec(path);
    if (match && method === 'GET') {
      try {
        const session = engine.portalSession(segment(match[1] ?? ''));
        const customerId = session.customer;
        return html(
          200,
          portalPage({
            customerId,
            email: engine.customersById(customerId)?.email ?? null,
            returnUrl: session.return_url,
            subscriptions: engine.subscriptions().filter((sub) => sub.customer === customerId),
            invoices: engine
              .invoices()
              .filter((inv) => inv.customer === customerId && inv.status !== 'draft'),
            productName: engine.productName,
          }),
        );
      } catch (error) {
        if (error instanceof SandboxError)
          return html(error.status, errorPage('Billing portal', error.message));
        throw error;
      }
    }
    match = /^\/invoice\/([^/]+)\/pay$/.exec(path);
    if (match && method === 'POST') {
      // The hosted invoice page's "Pay": the customer pays a sent invoice with their card.
      const id = segment(match[1] ?? '');
      try {
        const inv = engine.payInvoice(id);
        if (wantsJson(req)) return json(200, inv);
        return { status: 303, headers: { location: `/invoice/${inv.id}` }, body: '' };
      } catch (error) {
        if (!(error instanceof SandboxError)) throw error;
        if (wantsJson(req)) return errorReply(error);
        return html(error.status, errorPage('Invoice', error.message));
      }
    }
    match = /^\/invoice\/([^/]+)$/.exec(path);
    if (match && method === 'GET') {
      try {
        return html(200, invoicePage(engine.invoice(segment(match[1] ?? ''))));
      } catch (error) {
        if (error instanceof SandboxError) return html(error.status, errorPage('Invoice', error.message));
        throw error;
      }
    }
    return undefined;
  }

  function checkoutLines(id: string) {
    return engine.sessionLines(id).map((line) => ({ ...line, productName: engine.productName(line.price) }));
  }

  function readJson<T>(schema: z.ZodType<T>, rawBody: string): T {
    let value: unknown = {};
    if (rawBody.trim() !== '') {
      try {
        value = JSON.parse(rawBody);
      } catch {
        throw invalidRequest('The control API takes a JSON body.');
      }
    }
    return parse(schema, value);
  }

  function handleControl(method: string, url: URL, rawBody: string): Reply | undefined {
    const path = url.pathname.replace(/\/+$/, '');
    if (path === '/_sandbox/clock' && method === 'GET') {
      return json(200, { now: new Date(engine.now() * 1000).toISOString() });
    }
    if (path === '/_sandbox/clock/advance' && method === 'POST') {
      const p = readJson(params.control.advance, rawBody);
      const target = 'seconds' in p ? engine.now() + p.seconds : Math.floor(Date.parse(p.to) / 1000);
      const result = engine.advanceTo(target);
      return json(200, {
        from: new Date(result.from * 1000).toISOString(),
        now: new Date(result.to * 1000).toISOString(),
        events: result.events,
      });
    }
    let match = /^\/_sandbox\/customers\/([^/]+)\/payment_method$/.exec(path);
    if (match && method === 'POST') {
      const p = readJson(params.control.paymentMethod, rawBody);
      const id = segment(match[1] ?? '');
      engine.setPaymentMethod(id, p.fails);
      return json(200, { customer: id, fails: p.fails });
    }
    match = /^\/_sandbox\/invoices\/([^/]+)\/retry$/.exec(path);
    if (match && method === 'POST') {
      return json(200, engine.retryInvoice(segment(match[1] ?? '')));
    }
    match = /^\/_sandbox\/invoices\/([^/]+)\/(pay|uncollectible|void)$/.exec(path);
    if (match && method === 'POST') {
      const id = segment(match[1] ?? '');
      if (match[2] === 'pay') return json(200, engine.payInvoice(id));
      if (match[2] === 'uncollectible') return json(200, engine.markInvoiceUncollectible(id));
      return json(200, engine.voidInvoice(id));
    }
    match = /^\/_sandbox\/subscriptions\/([^/]+)\/status$/.exec(path);
    if (match && method === 'POST') {
      const p = readJson(params.control.status, rawBody);
      return json(200, engine.forceStatus(segment(match[1] ?? ''), p.status));
    }
    if (path === '/_sandbox/faults' && method === 'POST') {
      const p = readJson(params.control.fault, rawBody);
      const prefix = p.pathPrefix.startsWith('/v1') ? p.pathPrefix : `/v1${p.pathPrefix}`;
      faults.push({
        method: p.method,
        pathPrefix: prefix,
        status: p.status,
        remaining: p.count ?? (p.seconds === undefined ? 1 : null),
        until:
          p.seconds === undefined
            ? null
            : { clock: p.clock, atMs: clockMs(p.clock) + Math.round(p.seconds * 1000) },
      });
      return json(200, { faults });
    }
    match = /^\/_sandbox\/charges\/([^/]+)\/dispute$/.exec(path);
    if (match && method === 'POST') {
      const p = readJson(params.control.dispute, rawBody);
      return json(200, engine.disputeCharge(segment(match[1] ?? ''), p));
    }
    match = /^\/_sandbox\/disputes\/([^/]+)\/close$/.exec(path);
    if (match && method === 'POST') {
      const p = readJson(params.control.disputeClose, rawBody);
      return json(200, engine.closeDispute(segment(match[1] ?? ''), p.outcome));
    }
    if (path === '/_sandbox/faults' && method === 'GET') return json(200, { faults });
    if (path === '/_sandbox/faults' && method === 'DELETE') {
      faults.length = 0;
      return json(200, { faults });
    }
    if (path === '/_sandbox/events' && method === 'GET') {
      return json(200, list(engine.events(), '/_sandbox/events'));
    }
    if (path === '/_sandbox/deliveries' && method === 'GET') {
      return json(200, { data: deps.webhooks.deliveries() });
    }
    if (path === '/_sandbox/webhooks' && method === 'POST') {
      const p = readJson(params.control.webhooks, rawBody);
      if (p.url !== undefined) deps.webhooks.setUrl(p.url ?? undefined);
      if (p.enabled !== undefined) deps.webhooks.setEnabled(p.enabled);
      return json(200, { url: deps.webhooks.url() ?? null, enabled: deps.webhooks.enabled() });
    }
    if (path.startsWith('/_sandbox/')) {
      return errorReply(
        new SandboxError(
          404,
          'invalid_request_error',
          `Unrecognized sandbox control URL (${method}: ${path}).`,
        ),
      );
    }
    return undefined;
  }

  function route(req: http.IncomingMessage, rawBody: string, requestId: string): Reply {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://sandbox.invalid');
    try {
      if (url.pathname.startsWith('/v1/')) return handleApi(req, method, url, rawBody, requestId);
      const control = handleControl(method, url, rawBody);
      if (control) return control;
      const pageReply = handlePages(req, method, url);
      if (pageReply) return pageReply;
      return errorReply(
        new SandboxError(
          404,
          'invalid_request_error',
          `Unrecognized request URL (${method}: ${url.pathname}).`,
        ),
      );
    } catch (error) {
      if (error instanceof SandboxError) return errorReply(error);
      console.error('stripe sandbox: unhandled error', error);
      return errorReply(
        new SandboxError(
          500,
          'api_error',
          `The sandbox failed: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
    }
  }

  return (req, res) => {
    const requestId = ids.request();
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      // Everything from here to the reply is synchronous: two requests never interleave, which is what
      // makes an idempotency key safe under concurrency (the second sees the first's stored result).
      const reply = tooLarge
        ? errorReply(invalidRequest(`The request body exceeds ${MAX_BODY_BYTES} bytes.`))
        : route(req, Buffer.concat(chunks).toString('utf8'), requestId);
      const body = Buffer.from(reply.body, 'utf8');
      res.writeHead(reply.status, {
        ...reply.headers,
        'request-id': requestId,
        'stripe-version': deps.apiVersion,
        'content-length': String(body.byteLength),
      });
      res.end(body);
    });
    req.on('error', () => res.destroy());
  };
}
