import { servicesFromEnvironment } from '../composition.js';
import { app } from './functions-runtime.js';
import { type Route, toHandler } from './route.js';

/**
 * Registers a route with the Functions host. Function keys are not used (`anonymous` at the host):
 * every non-public route authenticates the caller's JWT itself, in `toHandler`.
 */
export function registerHttp(route: Route): void {
  app.http(route.name, {
    methods: [...route.methods],
    authLevel: 'anonymous',
    route: route.route,
    handler: toHandler(route, servicesFromEnvironment),
  });
}
