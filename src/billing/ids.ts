import { z } from 'zod';

/**
 * Ids that reach Table Storage keys. Table keys forbid `/ \ # ?` and control characters, and we use
 * `|` and `:` as separators inside keys, so ids are restricted to a safe alphabet up front rather than
 * escaped later: one rule, checked at every boundary.
 */
export const idSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be 1-128 characters of A-Z, a-z, 0-9, "_", "." or "-"');

export type UserId = string;
export type OrgId = string;
export type WorkflowId = string;
export type CredentialId = string;
/** A billing owner is always a user: the personal workspace's user, or an organization's creator. */
export type OwnerId = string;

/** Where a workflow or credential lives: a user's personal workspace, or an organization. */
export type Workspace =
  | { readonly kind: 'personal'; readonly userId: UserId }
  | { readonly kind: 'org'; readonly orgId: OrgId };

export const workspaceSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('personal'), userId: idSchema }),
  z.strictObject({ kind: z.literal('org'), orgId: idSchema }),
]);

/** The compact key used inside row keys: `org:<id>` or `user:<id>`. */
export function workspaceKey(workspace: Workspace): string {
  return workspace.kind === 'org' ? `org:${workspace.orgId}` : `user:${workspace.userId}`;
}

export function parseWorkspaceKey(key: string): Workspace {
  const [kind, id] = key.split(':');
  if (id !== undefined && idSchema.safeParse(id).success) {
    if (kind === 'org') return { kind: 'org', orgId: id };
    if (kind === 'user') return { kind: 'personal', userId: id };
  }
  throw new Error(`Corrupt workspace key "${key}"`);
}
