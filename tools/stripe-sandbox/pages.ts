import type { WireCheckoutSession, WireInvoice, WirePrice, WireSubscription } from './wire.js';

/** The few HTML pages a developer clicks through: hosted Checkout, the billing portal, an invoice. */

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function money(amount: number | null, currency: string | null): string {
  if (amount === null) return '';
  return new Intl.NumberFormat('en-US', {
    style: 'currency',
    currency: (currency ?? 'usd').toUpperCase(),
  }).format(amount / 100);
}

function date(seconds: number | null): string {
  return seconds === null ? '' : new Date(seconds * 1000).toISOString().slice(0, 10);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Stripe sandbox</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1a1f36}
.badge{display:inline-block;background:#ffde92;color:#5a3e00;border-radius:4px;padding:0 .4rem;font-size:.8rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e8ee}
button{background:#635bff;color:#fff;border:0;border-radius:6px;padding:.6rem 1.4rem;font-size:1rem;cursor:pointer}
.error{color:#c0123c}
</style></head><body><p><span class="badge">TEST MODE · local sandbox</span></p>${body}</body></html>`;
}

export interface CheckoutLine {
  readonly price: WirePrice;
  readonly quantity: number;
  readonly productName: string;
}

export function checkoutPage(
  session: WireCheckoutSession,
  lines: readonly CheckoutLine[],
  error?: string,
): string {
  const rows = lines
    .map((line) => {
      const every = line.price.recurring ? ` / ${line.price.recurring.interval}` : '';
      return `<tr><td>${escapeHtml(line.productName)}</td><td>× ${line.quantity}</td><td>${money(
        (line.price.unit_amount ?? 0) * line.quantity,
        line.price.currency,
      )}${every}</td></tr>`;
    })
    .join('');
  const open = session.status === 'open';
  const action = open
    ? `<form method="post" action="/checkout/${encodeURIComponent(session.id)}/pay"><button type="submit">Pay ${money(
        session.amount_total,
        session.currency,
      )}</button></form>`
    : `<p>This session is ${escapeHtml(session.status ?? 'closed')}.</p>`;
  const cancel = session.cancel_url
    ? `<p><a href="${escapeHtml(session.cancel_url)}">Cancel and go back</a></p>`
    : '';
  return page(
    'Checkout',
    `<h1>Checkout</h1>
<p>${session.mode === 'subscription' ? 'Subscribe' : 'Pay once'} · session <code>${escapeHtml(session.id)}</code></p>
<table><tbody>${rows}</tbody><tfoot><tr><th>Total</th><th></th><th>${money(session.amount_total, session.currency)}</th></tr></tfoot></table>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<p>Card: 4242 4242 4242 4242 (the sandbox declines it when the customer is flagged to fail).</p>
${action}${cancel}`,
  );
}

export function paidPage(session: WireCheckoutSession): string {
  return page(
    'Paid',
    `<h1>Payment complete</h1><p>Checkout session <code>${escapeHtml(session.id)}</code> is complete.</p>`,
  );
}

export function portalPage(input: {
  customerId: string;
  email: string | null;
  returnUrl: string | null;
  subscriptions: readonly WireSubscription[];
  invoices: readonly WireInvoice[];
  productName: (price: WirePrice) => string;
}): string {
  const subs = input.subscriptions
    .map((sub) => {
      const item = sub.items.data[0];
      const plan = item ? `${escapeHtml(input.productName(item.price))} × ${item.quantity ?? 1}` : '';
      const renews = item ? date(item.current_period_end) : '';
      return `<tr><td><code>${escapeHtml(sub.id)}</code></td><td>${plan}</td><td>${escapeHtml(sub.status)}${
        sub.cancel_at_period_end ? ' (cancels at period end)' : ''
      }</td><td>${renews}</td></tr>`;
    })
    .join('');
  const invoices = input.invoices
    .map(
      (inv) =>
        `<tr><td>${escapeHtml(inv.number ?? inv.id)}</td><td>${date(inv.created)}</td><td>${money(
          inv.amount_due,
          inv.currency,
        )}</td><td>${escapeHtml(inv.status ?? '')}</td></tr>`,
    )
    .join('');
  const back = input.returnUrl ? `<p><a href="${escapeHtml(input.returnUrl)}">Return</a></p>` : '';
  return page(
    'Billing portal',
    `<h1>Billing portal</h1><p>Customer <code>${escapeHtml(input.customerId)}</code>${
      input.email ? ` · ${escapeHtml(input.email)}` : ''
    }</p>
<h2>Subscriptions</h2><table><thead><tr><th>Id</th><th>Plan</th><th>Status</th><th>Period ends</th></tr></thead><tbody>${subs}</tbody></table>
<h2>Invoices</h2><table><thead><tr><th>Number</th><th>Date</th><th>Amount</th><th>Status</th></tr></thead><tbody>${invoices}</tbody></table>
${back}`,
  );
}

export function invoicePage(inv: WireInvoice): string {
  const rows = inv.lines.data
    .map(
      (line) =>
        `<tr><td>${escapeHtml(line.description ?? '')}</td><td>${date(line.period.start)} – ${date(line.period.end)}</td><td>${money(
          line.amount,
          line.currency,
        )}</td></tr>`,
    )
    .join('');
  return page(
    'Invoice',
    `<h1>Invoice ${escapeHtml(inv.number ?? inv.id)}</h1><p>Status: ${escapeHtml(inv.status ?? '')}</p>
<table><tbody>${rows}</tbody><tfoot><tr><th>Amount due</th><th></th><th>${money(inv.amount_due, inv.currency)}</th></tr></tfoot></table>${
      inv.collection_method === 'send_invoice' && (inv.status === 'open' || inv.status === 'uncollectible')
        ? `<form method="post" action="/invoice/${escapeHtml(inv.id)}/pay"><button type="submit">Pay</button></form>`
        : ''
    }`,
  );
}

export function errorPage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1><p class="error">${escapeHtml(message)}</p>`);
}
