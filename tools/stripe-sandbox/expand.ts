import { invalidRequest, type SandboxError } from './errors.js';
import { isRecord } from './wire.js';

/** Finds the current state of any object by id, and the fields Stripe only includes when expanded. */
export interface ObjectLookup {
  byId(id: string): unknown;
  /** Fields absent from the object unless expanded (`line_items` of a Checkout Session). */
  virtual(owner: Record<string, unknown>, field: string): unknown;
}

const MAX_DEPTH = 4;

function cannotExpand(path: string): SandboxError {
  return invalidRequest(`This property cannot be expanded (${path}).`, 'expand');
}

/**
 * Applies `expand[]` paths to a copy of a response, as Stripe does: each dotted segment walks into an
 * object, `data` (or any array) fans out over its elements, an id met on the way is replaced by the
 * object it names (so `latest_invoice.customer` expands both), and null stays null.
 */
export function applyExpansions(
  root: unknown,
  paths: readonly string[] | undefined,
  lookup: ObjectLookup,
): unknown {
  if (!paths || paths.length === 0) return root;
  const copy: unknown = structuredClone(root);
  for (const path of paths) {
    const segments = path.split('.');
    if (segments.some((s) => s === '')) throw cannotExpand(path);
    const depth = segments.filter((s) => s !== 'data').length;
    if (depth > MAX_DEPTH) {
      throw invalidRequest(
        `You cannot expand more than ${MAX_DEPTH} levels of a property. Property: ${path}`,
        'expand',
      );
    }
    walk(copy, segments, path, lookup);
  }
  return copy;
}

function resolveId(value: string, path: string, lookup: ObjectLookup): unknown {
  const found = lookup.byId(value);
  if (found === undefined) throw cannotExpand(path);
  return found;
}

function walk(node: unknown, segments: readonly string[], path: string, lookup: ObjectLookup): void {
  const [field, ...rest] = segments;
  if (field === undefined) return;
  if (Array.isArray(node)) {
    for (const element of node) walk(element, segments, path, lookup);
    return;
  }
  if (!isRecord(node)) throw cannotExpand(path);
  let value = node[field];
  if (value === undefined) {
    value = lookup.virtual(node, field);
    if (value === undefined) throw cannotExpand(path);
    node[field] = value;
  }
  if (value === null) return;
  if (typeof value === 'string') {
    value = resolveId(value, path, lookup);
    node[field] = value;
  } else if (Array.isArray(value)) {
    const expanded = value.map((element) =>
      typeof element === 'string' ? resolveId(element, path, lookup) : element,
    );
    node[field] = expanded;
    value = expanded;
  } else if (
    rest.length === 0 &&
    !(isRecord(value) && (typeof value.id === 'string' || value.object === 'list'))
  ) {
    // A number, a boolean or an embedded hash (`metadata`) is not an expandable reference.
    throw cannotExpand(path);
  }
  if (rest.length > 0) walk(value, rest, path, lookup);
}
