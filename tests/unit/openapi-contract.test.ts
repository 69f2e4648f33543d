import { describe, expect, it } from 'vitest';
import { assertDocumented, UndocumentedResponseError } from '../support/openapi.js';

/** The checker every end-to-end response goes through must itself refuse what the document lacks. */
describe('the OpenAPI response check', () => {
  const health = { method: 'GET', path: '/api/health', contentType: 'application/json' } as const;

  it('accepts a documented answer', () => {
    expect(() =>
      assertDocumented({
        ...health,
        status: 200,
        body: {
          status: 'ok',
          checks: { storage: { status: 'ok', latencyMs: 4 }, queue: { status: 'ok', latencyMs: 3 } },
        },
      }),
    ).not.toThrow();
  });

  it('refuses a body the schema does not allow, an undocumented status, content type or operation', () => {
    expect(() => assertDocumented({ ...health, status: 200, body: { status: 'fine' } })).toThrow(
      UndocumentedResponseError,
    );
    expect(() => assertDocumented({ ...health, status: 418, body: undefined })).toThrow(
      /status not documented/,
    );
    expect(() =>
      assertDocumented({ ...health, status: 200, contentType: 'text/html', body: '<p>ok</p>' }),
    ).toThrow(/content type/);
    expect(() =>
      assertDocumented({
        method: 'GET',
        path: '/api/nowhere',
        status: 200,
        contentType: null,
        body: undefined,
      }),
    ).toThrow(/no such operation/);
  });

  it("accepts the local host's own 404 and 405, described once in the document", () => {
    const problem = (status: number, code: string) => ({
      type: `/problems/${code}`,
      title: 'x',
      status,
      detail: 'x',
      code,
    });
    expect(() =>
      assertDocumented({
        method: 'GET',
        path: '/api/nowhere',
        status: 404,
        contentType: 'application/problem+json',
        body: problem(404, 'route_not_found'),
      }),
    ).not.toThrow();
    expect(() =>
      assertDocumented({
        method: 'DELETE',
        path: '/api/health',
        status: 405,
        contentType: 'application/problem+json',
        body: problem(405, 'method_not_allowed'),
      }),
    ).not.toThrow();
  });
});
