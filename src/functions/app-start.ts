import { servicesFromEnvironment } from '../composition.js';
import { app } from '../http/functions-runtime.js';

// Fail the app at start-up, naming every bad setting, instead of failing each request later.
app.hook.appStart(() => {
  servicesFromEnvironment();
});
