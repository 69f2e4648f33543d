import { z } from 'zod';
import { InvalidAuditIdError } from '../billing/audit/ids.js';
import { validationError } from '../billing/errors.js';
import { parseAuditQuery, withCursorCheck } from '../http/audit-query.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/*
 * Operator routes live under `ops/`, not `admin/`: the Functions host reserves routes starting with
 * "admin" (see ops-events.ts). Access is the `admin` role.
 */

/**
 * The audit trail, newest first: one owner's (its partition, the rows written with each change) or, without
 * `ownerId`, every owner's through the day index (docs/decisions/0007-audit-index.md).
 */
export const opsAuditList = defineRoute({
  name: 'opsAuditList',
  methods: ['GET'],
  route: 'ops/audit',
  access: 'admin',
  async handle({ request, services }) {
    const { ownerId, filter } = parseAuditQuery(request.query, { ownerParam: true });
    const page = await withCursorCheck(() =>
      ownerId === undefined ? services.audit.listAll(filter) : services.audit.listOwner(ownerId, filter),
    );
    return json(200, page);
  },
});

const revertBody = z.strictObject({ reason: z.string().trim().min(1).max(500) });

/**
 * Reverts one admin change through the handler registered for its kind; Stripe's changes and others
 * that are not revertible answer 409 (audit/revert.ts).
 */
export const opsAuditRevert = defineRoute({
  name: 'opsAuditRevert',
  methods: ['POST'],
  route: 'ops/audit/{id}/revert',
  access: 'admin',
  async handle({ request, invocation, services, principal }) {
    const id = request.params.id ?? '';
    const body = await readJson(request, revertBody, services.config.maxBodyBytes);
    try {
      const outcome = await services.reverter.revert({
        id,
        reason: body.reason,
        actor: principal.userId,
        requestId: invocation.invocationId,
      });
      return json(200, outcome);
    } catch (error) {
      if (error instanceof InvalidAuditIdError)
        throw validationError('invalid_id', `A path id is invalid. id: ${error.message}`, [
          { path: 'id', message: error.message },
        ]);
      throw error;
    }
  },
});

registerHttp(opsAuditList);
registerHttp(opsAuditRevert);
