import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpResponse as HttpResponseType, LogHandler } from '@azure/functions';
import type { Services } from '../composition.js';
import { HttpRequest, HttpResponse, InvocationContext } from '../http/functions-runtime.js';
import { problemResponse } from '../http/problem.js';
import { type Route, toHandler } from '../http/route.js';
import { withInvocationId } from './log.js';

/** A route template compiled for matching: `directory/orgs/{orgId}` -> /^\/api\/directory\/orgs\/([^/]+)$/. */
interface CompiledRoute {
  readonly route: Route;
  readonly pattern: RegExp;
  readonly params: readonly string[];
  readonly handler: ReturnType<typeof toHandler>;
}

export interface LocalHostOptions {
  readonly services: Services;
  readonly routes: readonly Route[];
  /** 0 takes a free port. @default 7071 */
  readonly port?: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** Where function logs go. @default console */
  readonly log?: LogHandler;
  /** Bodies above this are refused before they are buffered. @default 1 MiB */
  readonly maxRequestBytes?: number;
}

export interface LocalHost {
  readonly url: string;
  close(): Promise<void>;
}

const HARD_BODY_LIMIT = 1024 * 1024;

function compile(route: Route, services: () => Services): CompiledRoute {
  const params: string[] = [];
  const source = route.route
    .split('/')
    .map((segment) => {
      const param = /^\{(\w+)\}$/.exec(segment)?.[1];
      if (param) {
        params.push(param);
        return '([^/]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return {
    route,
    pattern: new RegExp(`^/api/${source}/?$`, 'i'),
    params,
    handler: toHandler(route, services),
  };
}

/**
 * Serves the same route objects the Functions host registers, on Node's HTTP server, converting between
 * Node's request/response and the Functions `HttpRequest`/`HttpResponse` types so handlers cannot tell
 * the difference. Routes are prefixed with `api/`, as `host.json` does for Functions.
 */
export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const compiled = options.routes.map((route) => compile(route, () => options.services));
  const maxBytes = options.maxRequestBytes ?? HARD_BODY_LIMIT;

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
      const candidates = compiled
        .map((c) => ({ c, match: c.pattern.exec(url.pathname) }))
        .filter((x): x is { c: CompiledRoute; match: RegExpExecArray } => x.match !== null);
      if (candidates.length === 0)
        return send(res, problem(404, 'route_not_found', `No route for ${url.pathname}.`));
      const method = (req.method ?? 'GET').toUpperCase();
      const chosen = candidates.find((x) => x.c.route.methods.includes(method as Route['methods'][number]));
      if (!chosen) {
        const allowed = [...new Set(candidates.flatMap((x) => x.c.route.methods))].join(', ');
        return send(res, problem(405, 'method_not_allowed', `Use one of: ${allowed}.`, { allow: allowed }));
      }

      const body = await readBody(req, maxBytes);
      if (body === 'too_large') {
        return send(
          res,
          problem(413, 'body_too_large', `The body exceeds ${maxBytes} bytes.`, { connection: 'close' }),
        );
      }
      const params = Object.fromEntries(
        chosen.c.params.map((name, i) => [name, safeDecode(chosen.match[i + 1] ?? '')]),
      );
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(req.headers)) {
        if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(', ') : value;
      }
      const request = new HttpRequest({
        method,
        url: url.toString(),
        headers,
        params,
        query: Object.fromEntries(url.searchParams),
        ...(body.byteLength > 0 ? { body: { bytes: body } } : {}),
      });
      const invocationId = randomUUID();
      const context = new InvocationContext({
        invocationId,
        functionName: chosen.c.route.name,
        ...(options.log ? { logHandler: withInvocationId(options.log, invocationId) } : {}),
      });
      const init = await chosen.c.handler(request, context);
      await send(res, new HttpResponse(init));
    } catch (error) {
      console.error('local host: unhandled error', error);
      if (!res.headersSent)
        await send(res, problem(500, 'internal', 'The local host failed; see its console.'));
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 7071, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function problem(
  status: number,
  code: string,
  detail: string,
  headers: Record<string, string> = {},
): HttpResponseType {
  const title = http.STATUS_CODES[status] ?? 'Error';
  return new HttpResponse(
    problemResponse({ type: `/problems/${code}`, title, status, detail, code }, headers),
  );
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // left as sent; id validation rejects it with a clear message
  }
}

async function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Uint8Array | 'too_large'> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) {
    req.resume();
    return 'too_large';
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.byteLength;
    if (size > maxBytes) {
      req.resume();
      return 'too_large';
    }
    chunks.push(buffer);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

async function send(res: http.ServerResponse, response: HttpResponseType): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  const headers: Record<string, string> = {};
  response.headers.forEach((value, key) => {
    headers[key] = value;
  });
  if (body.byteLength > 0 && !headers['content-type']) headers['content-type'] = 'application/json';
  headers['content-length'] = String(body.byteLength);
  res.writeHead(response.status, headers);
  res.end(body);
}
