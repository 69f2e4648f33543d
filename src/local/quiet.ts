/**
 * Outside the Functions host, `@azure/functions` runs in "test mode" and warns once per `app.http` call
 * that it is skipping registration. The local host serves those routes itself, so the warnings are noise;
 * only those exact messages are dropped.
 */
const TEST_MODE_WARNING = /@azure\/functions.*test mode|Skipping call to register function/i;

export function silenceFunctionsTestModeWarnings(): void {
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && TEST_MODE_WARNING.test(args[0])) return;
    warn(...args);
  };
}
