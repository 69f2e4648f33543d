import { servicesFromEnvironment } from '../composition.js';
import { app } from '../http/functions-runtime.js';
import { startTelemetry, stopTelemetry } from '../telemetry/start.js';

// Fail the app at start-up, naming every bad setting, instead of failing each request later.
// Telemetry starts here, once per worker, when APPLICATIONINSIGHTS_CONNECTION_STRING is set.
app.hook.appStart(async () => {
  await startTelemetry(servicesFromEnvironment().config.telemetry);
});

// Flush what is buffered before the worker goes away.
app.hook.appTerminate(async () => {
  await stopTelemetry();
});
