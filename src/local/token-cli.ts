import { parseArgs } from 'node:util';
import { withLocalDefaults } from './defaults.js';
import { mintToken } from './token.js';

const usage =
  'usage: npm run token -- --sub <userId> [--org <orgId>] [--role service] [--role admin] [--ttl <seconds>]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      org: { type: 'string' },
      role: { type: 'string', multiple: true },
      ttl: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help || !values.sub) {
    console.error(usage);
    process.exit(values.help ? 0 : 2);
  }
  const ttl = values.ttl === undefined ? 3600 : Number(values.ttl);
  if (!Number.isInteger(ttl)) {
    console.error(`--ttl must be a whole number of seconds\n${usage}`);
    process.exit(2);
  }
  const env = withLocalDefaults(process.env);
  const token = await mintToken({
    sub: values.sub,
    org: values.org,
    roles: values.role ?? [],
    ttlSeconds: ttl,
    secret: env.AUTH_JWT_SECRET ?? '',
    issuer: env.AUTH_ISSUER ?? '',
    audience: env.AUTH_AUDIENCE ?? '',
  });
  process.stdout.write(`${token}\n`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(2);
});
