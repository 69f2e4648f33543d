/**
 * Decoder for Stripe's form encoding (`application/x-www-form-urlencoded` bodies and GET query
 * strings), as the official SDK writes it: `a[b][0][c]=x`, `expand[0]=data.product`, and also the
 * `expand[]=x` spelling people use with curl.
 *
 * Rules:
 * - `+` is a space; percent-escapes are decoded (a malformed escape is an error, not a guess).
 * - A container whose keys are all array indices (`[0]`, `[7]`) or appends (`[]`) becomes an array in
 *   index order (gaps close up); any other container is an object.
 * - A scalar sent twice keeps the last value; a key used both as a scalar and as a container is an error.
 * - Keys that would reach `Object.prototype` (`__proto__`, `constructor`, `prototype`) are refused.
 */

export type FormValue = string | FormValue[] | { [key: string]: FormValue };
export type FormObject = { [key: string]: FormValue };

export class FormDecodeError extends Error {
  constructor(
    message: string,
    /** The offending parameter, in bracket form, when known. */
    readonly param?: string,
  ) {
    super(message);
    this.name = 'FormDecodeError';
  }
}

/** Intermediate tree: ordered maps, so `[]` appends and numeric keys can be told apart from names. */
interface Node {
  readonly entries: Map<string, Node | string>;
  /** Every key so far was an index or an append. */
  arrayLike: boolean;
  appends: number;
}

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
const INDEX = /^(0|[1-9]\d{0,5})$/;
const MAX_DEPTH = 12;

function newNode(): Node {
  return { entries: new Map(), arrayLike: true, appends: 0 };
}

function decodeComponent(raw: string, whole: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    throw new FormDecodeError(`Invalid percent-encoding in "${whole}".`);
  }
}

/** `a[b][0][]` -> ['a', 'b', '0', '']. */
function splitKey(key: string): string[] {
  const open = key.indexOf('[');
  if (open === -1) return [key];
  const segments = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest.length > 0) {
    const match = /^\[([^[\]]*)\]/.exec(rest);
    if (!match) throw new FormDecodeError(`Malformed parameter name "${key}".`, key);
    segments.push(match[1] ?? '');
    rest = rest.slice(match[0].length);
  }
  return segments;
}

function paramName(segments: readonly string[]): string {
  const [first, ...rest] = segments;
  return `${first ?? ''}${rest.map((s) => `[${s}]`).join('')}`;
}

function insert(root: Node, segments: readonly string[], value: string): void {
  if (segments.length > MAX_DEPTH) {
    throw new FormDecodeError(
      `Parameter "${paramName(segments)}" is nested too deeply.`,
      paramName(segments),
    );
  }
  let node = root;
  for (let i = 0; i < segments.length; i++) {
    const raw = segments[i] ?? '';
    if (i === 0 && raw === '') throw new FormDecodeError('A parameter name is empty.');
    if (FORBIDDEN.has(raw)) {
      throw new FormDecodeError(`Parameter name "${raw}" is not allowed.`, paramName(segments));
    }
    let key = raw;
    if (i > 0) {
      if (raw === '') key = `\u0000append${node.appends++}`;
      else if (!INDEX.test(raw)) node.arrayLike = false;
    } else {
      node.arrayLike = false;
    }
    const last = i === segments.length - 1;
    const existing = node.entries.get(key);
    if (last) {
      if (existing !== undefined && typeof existing !== 'string') {
        throw new FormDecodeError(
          `Parameter "${paramName(segments)}" is sent both as a value and as a hash or array.`,
          paramName(segments),
        );
      }
      node.entries.set(key, value);
      return;
    }
    if (typeof existing === 'string') {
      throw new FormDecodeError(
        `Parameter "${paramName(segments.slice(0, i + 1))}" is sent both as a value and as a hash or array.`,
        paramName(segments.slice(0, i + 1)),
      );
    }
    const child = existing ?? newNode();
    if (!existing) node.entries.set(key, child);
    node = child;
  }
}

function materialize(node: Node): FormValue {
  if (node.arrayLike && node.entries.size > 0) {
    const indexed: Array<[number, FormValue]> = [];
    let appendOrder = 1_000_000;
    for (const [key, value] of node.entries) {
      const position = key.startsWith('\u0000append') ? appendOrder++ : Number(key);
      indexed.push([position, typeof value === 'string' ? value : materialize(value)]);
    }
    indexed.sort((a, b) => a[0] - b[0]);
    return indexed.map(([, value]) => value);
  }
  for (const key of node.entries.keys()) {
    if (key.startsWith('\u0000append')) {
      throw new FormDecodeError('A parameter mixes named keys with appended `[]` entries.');
    }
  }
  return Object.fromEntries(
    [...node.entries].map(([key, value]) => [key, typeof value === 'string' ? value : materialize(value)]),
  );
}

/** Decodes a form body or query string (without the leading `?`) into nested objects and arrays. */
export function decodeForm(input: string): FormObject {
  const root = newNode();
  root.arrayLike = false;
  for (const pair of input.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawKey = eq === -1 ? pair : pair.slice(0, eq);
    const rawValue = eq === -1 ? '' : pair.slice(eq + 1);
    const key = decodeComponent(rawKey, pair);
    const value = decodeComponent(rawValue, pair);
    insert(root, splitKey(key), value);
  }
  const result = materialize(root);
  return Array.isArray(result) || typeof result === 'string' ? {} : result;
}
