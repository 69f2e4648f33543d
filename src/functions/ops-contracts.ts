import { z } from 'zod';
import { contractTermsShape, refineTerms } from '../billing/contracts/model.js';
import { readJson } from '../http/body.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** Why an operator makes the change: required, and kept in the audit row. */
const reason = z.string().trim().min(1).max(500);

const putBody = z.strictObject({ ...contractTermsShape, reason }).superRefine(refineTerms);
const deleteBody = z.strictObject({ reason });

/*
 * Operator routes live under `ops/` (the Functions host refuses routes and function names starting with
 * "admin"); access is the `admin` role, and user or service tokens get 403. The owner comes from the path:
 * an operator acts on any owner.
 */

/**
 * Sets an owner's enterprise contract: manual activation, no checkout. While `startsAt <= now < endsAt` the
 * owner is on enterprise with these limits, flags and seats. With `billing: stripe_invoice` the first
 * period's invoice is issued once the contract is stored (a failure there is left to the
 * `contractInvoicing` timer, which issues any period not yet invoiced). 201 when the owner had no
 * contract, 200 otherwise (`changed: false` when the terms were these already).
 */
export const opsContractPut = defineRoute({
  name: 'opsContractPut',
  methods: ['PUT'],
  route: 'ops/owners/{ownerId}/contract',
  access: 'admin',
  async handle({ request, invocation, services, principal }) {
    const { ownerId } = idParams(request, 'ownerId');
    const { reason: why, ...terms } = await readJson(request, putBody, services.config.maxBodyBytes);
    const outcome = await services.contracts.set({
      ownerId,
      terms,
      actor: principal.userId,
      reason: why,
      requestId: invocation.invocationId,
    });
    let contract = outcome.contract;
    if (terms.billing === 'stripe_invoice' && contract.active) {
      try {
        const issued = await services.contractInvoicing.issueDue(ownerId, {
          kind: 'admin',
          id: invocation.invocationId,
          actor: principal.userId,
        });
        // Read again: the invoice is recorded (by this call, or by its own event if that came first).
        if (issued.issued > 0) contract = await services.contracts.get(ownerId);
      } catch (error) {
        // Stored and in force; the invoice follows from the timer. Not a failure of this request.
        invocation.warn(`contract ${contract.id} of ${ownerId}: first invoice not issued yet`, error);
      }
    }
    return json(outcome.created ? 201 : 200, { contract, changed: outcome.changed });
  },
});

/** The owner's contract, active or not; 404 `contract_not_found` without one. */
export const opsContractGet = defineRoute({
  name: 'opsContractGet',
  methods: ['GET'],
  route: 'ops/owners/{ownerId}/contract',
  access: 'admin',
  async handle({ request, services }) {
    const { ownerId } = idParams(request, 'ownerId');
    return json(200, { contract: await services.contracts.get(ownerId) });
  },
});

/**
 * Ends the owner's contract now: it falls back to a live self-serve subscription or to free, with
 * over-limit items locked, never deleted. Invoices already issued stay in Stripe. 204 whether or not there
 * was one (safe to retry).
 */
export const opsContractDelete = defineRoute({
  name: 'opsContractDelete',
  methods: ['DELETE'],
  route: 'ops/owners/{ownerId}/contract',
  access: 'admin',
  async handle({ request, invocation, services, principal }) {
    const { ownerId } = idParams(request, 'ownerId');
    const body = await readJson(request, deleteBody, services.config.maxBodyBytes);
    await services.contracts.end({
      ownerId,
      actor: principal.userId,
      reason: body.reason,
      requestId: invocation.invocationId,
    });
    return { status: 204, headers: { 'cache-control': 'no-store' } };
  },
});

registerHttp(opsContractPut);
registerHttp(opsContractGet);
registerHttp(opsContractDelete);
