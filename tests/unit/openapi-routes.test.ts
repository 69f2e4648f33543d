import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { routes } from '../../src/functions/routes.js';

/**
 * The document and the registered routes name the same operations: every route's methods are documented
 * at its path with its function name (`x-function-name`) and access (`x-access`), and every documented
 * operation is served by a route. Response shapes are checked by the e2e harness on every answer.
 */

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;
const operationSchema = z.looseObject({ 'x-function-name': z.string(), 'x-access': z.string().optional() });
const documentSchema = z.object({ paths: z.record(z.string(), z.record(z.string(), z.unknown())) });
const document = documentSchema.parse(parse(readFileSync('docs/openapi.yaml', 'utf8')));

const documented = Object.entries(document.paths).flatMap(([path, item]) =>
  METHODS.filter((method) => item[method] !== undefined).map((method) => {
    const operation = operationSchema.parse(item[method]);
    return {
      key: `${method.toUpperCase()} ${path}`,
      name: operation['x-function-name'],
      access: operation['x-access'],
    };
  }),
);
const served = routes.flatMap((route) =>
  route.methods.map((method) => ({
    key: `${method.toUpperCase()} /${route.route}`,
    name: route.name,
    access: route.access,
  })),
);
const byKey = <T extends { readonly key: string }>(list: readonly T[]) =>
  Object.fromEntries(list.map((entry) => [entry.key, entry]));

describe('docs/openapi.yaml and the routes', () => {
  it('document the same operations under the same function names', () => {
    const docs = byKey(documented);
    const code = byKey(served);
    expect(Object.keys(docs).sort()).toEqual(Object.keys(code).sort());
    for (const [key, route] of Object.entries(code)) expect(docs[key]?.name, key).toBe(route.name);
  });

  it('state the access each route enforces', () => {
    const docs = byKey(documented);
    for (const route of served) {
      const access = docs[route.key]?.access;
      if (access !== undefined) expect(access, route.key).toBe(route.access);
    }
  });
});
