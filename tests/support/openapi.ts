import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

/**
 * Holds every HTTP answer the end-to-end suites receive to `docs/openapi.yaml`: the operation must be
 * documented, the status must be one of its responses (or its `4XX`/`5XX`/`default`), the content type
 * must be documented for it, and the body must validate against the schema (JSON Schema 2020-12, as
 * OpenAPI 3.1 says). A response the document does not describe fails the test that received it.
 *
 * The local host's own 404 `route_not_found` and 405 `method_not_allowed` (described in the document's
 * "Local host" section, not per operation) are accepted for paths and methods no operation has.
 */
const DOCUMENT_ID = 'https://billing.local/openapi.yaml';
const BASE_PATH = '/api';
const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

interface Document {
  readonly paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>;
  readonly components: { readonly responses?: Record<string, Response> };
}
interface Operation {
  readonly responses: Record<string, Response | { readonly $ref: string }>;
}
interface Response {
  readonly content?: Record<string, unknown>;
}

export class UndocumentedResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UndocumentedResponseError';
  }
}

const documentPath = fileURLToPath(new URL('../../docs/openapi.yaml', import.meta.url));
const document = parse(readFileSync(documentPath, 'utf8')) as Document;

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats.default(ajv);
ajv.addSchema({ ...document, $id: DOCUMENT_ID });

/** `/directory/orgs/{orgId}` -> a matcher; more literal segments win over templated ones. */
const templates = Object.keys(document.paths)
  .map((template) => {
    const segments = template.split('/').slice(1);
    const pattern = new RegExp(
      `^/${segments.map((s) => (/^\{.+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))).join('/')}$`,
    );
    const literal = segments.filter((s) => !/^\{.+\}$/.test(s)).length;
    return { template, pattern, literal };
  })
  .sort((a, b) => b.literal - a.literal);

const pointer = (...parts: string[]) =>
  `${DOCUMENT_ID}#/${parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

const validators = new Map<string, ValidateFunction>();
function validatorFor(ref: string): ValidateFunction {
  let validate = validators.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    validators.set(ref, validate);
  }
  return validate;
}

/** Resolves a response that is a `$ref` to `#/components/responses/<name>`. */
function resolve(
  response: Response | { readonly $ref: string },
  at: readonly string[],
): { response: Response; at: readonly string[] } {
  if ('$ref' in response && typeof response.$ref === 'string') {
    const name = response.$ref.replace('#/components/responses/', '');
    const found = document.components.responses?.[name];
    if (!found) throw new UndocumentedResponseError(`Dangling $ref ${response.$ref}`);
    return { response: found, at: ['components', 'responses', name] };
  }
  return { response: response as Response, at };
}

export interface ObservedResponse {
  readonly method: string;
  /** As requested, with `/api` and any query string. */
  readonly path: string;
  readonly status: number;
  readonly contentType: string | null;
  /** Parsed JSON, or the text when it is not JSON, or undefined when empty. */
  readonly body: unknown;
}

/** @throws UndocumentedResponseError saying what the document lacks or what the body violates */
export function assertDocumented(observed: ObservedResponse): void {
  const method = observed.method.toLowerCase() as (typeof METHODS)[number];
  const url = new URL(observed.path, 'http://local');
  const path = url.pathname.startsWith(`${BASE_PATH}/`) ? url.pathname.slice(BASE_PATH.length) : url.pathname;
  const what = `${observed.method} ${url.pathname} -> ${observed.status}`;
  const problemCode =
    typeof observed.body === 'object' && observed.body !== null && 'code' in observed.body
      ? observed.body.code
      : undefined;
  const matched = templates.find((t) => t.pattern.test(path));
  const operation = matched ? document.paths[matched.template]?.[method] : undefined;
  if (!matched || !operation) {
    const localAnswer =
      (!matched && observed.status === 404 && problemCode === 'route_not_found') ||
      (matched !== undefined && observed.status === 405 && problemCode === 'method_not_allowed');
    if (localAnswer) return;
    throw new UndocumentedResponseError(`${what}: no such operation in docs/openapi.yaml`);
  }
  const key = [String(observed.status), `${String(observed.status)[0]}XX`, 'default'].find(
    (k) => operation.responses[k] !== undefined,
  );
  const declared = key === undefined ? undefined : operation.responses[key];
  if (key === undefined || declared === undefined) {
    // Limits every route shares (the local host's body limit) are described once, in the document's text.
    if (observed.status === 413 && problemCode === 'body_too_large') return;
    throw new UndocumentedResponseError(
      `${what}: status not documented for ${matched.template} (has ${Object.keys(operation.responses).join(', ')})`,
    );
  }
  const { response, at } = resolve(declared, ['paths', matched.template, method, 'responses', key]);
  const content = response.content;
  if (content === undefined) {
    if (observed.body !== undefined && observed.body !== '') {
      throw new UndocumentedResponseError(`${what}: a body was sent where none is documented`);
    }
    return;
  }
  const mediaType = (observed.contentType ?? '').split(';')[0]?.trim() ?? '';
  if (!(mediaType in content)) {
    throw new UndocumentedResponseError(
      `${what}: content type "${mediaType}" not documented (has ${Object.keys(content).join(', ')})`,
    );
  }
  const media = content[mediaType] as { readonly schema?: unknown } | undefined;
  if (media?.schema === undefined) return;
  const validate = validatorFor(pointer(...at, 'content', mediaType, 'schema'));
  if (!validate(observed.body)) {
    throw new UndocumentedResponseError(
      `${what}: body does not match docs/openapi.yaml: ${ajv.errorsText(validate.errors, { separator: '; ' })}\n${JSON.stringify(observed.body).slice(0, 600)}`,
    );
  }
}
