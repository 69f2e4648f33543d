import type {
  HttpHandler,
  HttpMethod,
  HttpRequest,
  HttpResponseInit,
  InvocationContext,
} from '@azure/functions';
import type { Services } from '../composition.js';
import { tracedHttp } from '../telemetry/invocation.js';
import { type Principal, requireRole } from './auth.js';
import { errorResponse } from './problem.js';

export interface RouteContext {
  readonly request: HttpRequest;
  readonly invocation: InvocationContext;
  readonly services: Services;
}

export interface AuthenticatedContext extends RouteContext {
  readonly principal: Principal;
}

interface RouteBase {
  /** Function name; unique. */
  readonly name: string;
  readonly methods: readonly HttpMethod[];
  /** Route template without the `api/` prefix, in Functions syntax (`directory/orgs/{orgId}`). */
  readonly route: string;
}

/**
 * An HTTP endpoint, independent of how it is hosted: the Functions host registers it with `app.http`,
 * the local host serves the very same object on Node's HTTP server. Access is anyone (`anonymous`),
 * any signed-in user (`user`), the platform's own services (`service`, a token with that role), or
 * operators (`admin`, a token with that role; a service token is not enough).
 */
export type Route =
  | (RouteBase & {
      readonly access: 'anonymous';
      readonly handle: (context: RouteContext) => Promise<HttpResponseInit>;
    })
  | (RouteBase & {
      readonly access: 'user' | 'service' | 'admin';
      readonly handle: (context: AuthenticatedContext) => Promise<HttpResponseInit>;
    });

export function defineRoute<R extends Route>(route: R): R {
  return route;
}

/**
 * Adapts a route to a Functions handler: authentication, role checks, error mapping and the invocation's
 * span in one place.
 */
export function toHandler(route: Route, services: () => Services): HttpHandler {
  return tracedHttp(route.route, async (request, invocation) => {
    try {
      const context: RouteContext = { request, invocation, services: services() };
      if (route.access === 'anonymous') return await route.handle(context);
      const principal = await context.services.authenticate(request.headers.get('authorization'));
      if (route.access === 'service' || route.access === 'admin') requireRole(principal, route.access);
      return await route.handle({ ...context, principal });
    } catch (error) {
      return errorResponse(error, invocation);
    }
  });
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return { status, jsonBody: body, headers: { 'cache-control': 'no-store', ...headers } };
}
