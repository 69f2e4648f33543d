import functions from '@azure/functions';

/**
 * `@azure/functions` is a bundled CommonJS module whose named exports Node's ESM loader cannot detect,
 * so runtime values come through its default export here. Types still import from the package directly.
 */
export const { app, HttpRequest, HttpResponse, InvocationContext } = functions;
