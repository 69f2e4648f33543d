import type { LogHandler } from '@azure/functions';
import { createServices } from '../composition.js';
import { ConfigError, loadConfig } from '../config.js';
import { type RunningAzurite, startAzurite } from './azurite.js';
import { withLocalDefaults } from './defaults.js';
import { silenceFunctionsTestModeWarnings } from './quiet.js';
import { startLocalHost } from './server.js';

silenceFunctionsTestModeWarnings();
const { routes } = await import('../functions/routes.js');

const log: LogHandler = (level, ...args) => {
  if (level === 'trace' || level === 'debug') return;
  const line = args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ');
  (level === 'error' || level === 'critical' ? console.error : console.log)(`[${level}] ${line}`);
};

async function main(): Promise<void> {
  const env = withLocalDefaults(process.env);
  let azurite: RunningAzurite | undefined;
  if (!env.BILLING_STORAGE_CONNECTION) {
    const location = env.AZURITE_LOCATION ?? '.data/azurite';
    console.log(`Starting Azurite (data in ${location}) ...`);
    const ports = {
      blob: Number(env.AZURITE_BLOB_PORT),
      queue: Number(env.AZURITE_QUEUE_PORT),
      table: Number(env.AZURITE_TABLE_PORT),
    };
    azurite = await startAzurite({ location, ports });
    env.BILLING_STORAGE_CONNECTION = azurite.connectionString;
  }

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(env);
  } catch (error) {
    await azurite?.stop();
    throw error;
  }
  const services = createServices(config);
  const host = await startLocalHost({ services, routes, port: Number(env.LOCAL_PORT ?? 7071), log });

  console.log(`
Billing backend running at ${host.url}/api
  health:   curl ${host.url}/api/health
  a token:  npm run token -- --sub user_1 [--org org_1] [--role service]
  then:     curl -H "Authorization: Bearer <token>" ${host.url}/api/billing/summary
Ctrl-C stops the host and Azurite.`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping ...`);
    await host.close().catch(() => undefined);
    await azurite?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
