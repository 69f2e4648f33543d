/**
 * `npm run bench`: entitlement checks over HTTP against the local host, beside a baseline measured in the
 * same run on the same Azurite: raw Table Storage point reads through the SDK. Writes JSON to
 * bench/results/. Numbers are only comparable within one file (same machine, same moment).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { TableClient } from '@azure/data-tables';
import { catalog } from '../src/billing/catalog.js';
import { freePort, startAzurite } from '../src/local/azurite.js';
import { LOCAL_DEFAULTS } from '../src/local/defaults.js';
import { mintToken } from '../src/local/token.js';
import { type Measured, measure, projectRoot, writeReport } from './measure.js';

const OWNERS = 200;
const WORKFLOWS_PER_OWNER = 4;
const CONCURRENCY = 16;
const OPS_PER_ROUND = 3_000;
const ROUNDS = 3;

const run = (name: string, description: string, op: (i: number) => Promise<void>) =>
  measure(name, description, OPS_PER_ROUND, CONCURRENCY, ROUNDS, op);

async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`local host exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/api/health`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('local host did not become healthy within 30 s');
}

async function main(): Promise<void> {
  const root = projectRoot;
  const azurite = await startAzurite();
  const port = await freePort();
  const prefix = `bench${Date.now().toString(36)}`;
  // The host runs in its own process, as it would in production; this process only generates load.
  const host = spawn(process.execPath, [path.join(root, 'dist/src/local/main.js')], {
    env: {
      ...process.env,
      BILLING_STORAGE_CONNECTION: azurite.connectionString,
      BILLING_TABLE_PREFIX: prefix,
      LOCAL_PORT: String(port),
      STRIPE_SANDBOX_PORT: String(await freePort()),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(url, host);
    const service = await mintToken({
      sub: 'bench',
      roles: ['service'],
      secret: LOCAL_DEFAULTS.AUTH_JWT_SECRET,
      issuer: LOCAL_DEFAULTS.AUTH_ISSUER,
      audience: LOCAL_DEFAULTS.AUTH_AUDIENCE,
    });
    const call = async (method: string, route: string, body: unknown) => {
      const response = await fetch(`${url}/api/${route}`, {
        method,
        headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
      return text;
    };

    console.log(
      `Seeding ${OWNERS} owners, each with an organization and ${WORKFLOWS_PER_OWNER} workflows ...`,
    );
    for (let o = 0; o < OWNERS; o++) {
      await call('PUT', `directory/orgs/org${o}`, { creatorId: `user${o}` });
      await Promise.all(
        Array.from({ length: WORKFLOWS_PER_OWNER }, (_, w) =>
          call('PUT', `directory/workflows/wf${o}-${w}`, { workspace: { orgId: `org${o}` }, nodeCount: 5 }),
        ),
      );
    }

    const baselineClient = TableClient.fromConnectionString(azurite.connectionString, `${prefix}directory`, {
      allowInsecureConnection: true,
    });
    const results: Measured[] = [];
    results.push(
      await run(
        'baseline: table point read',
        'TableClient.getEntity of one org index row, no HTTP',
        async (i) => {
          await baselineClient.getEntity(`org:org${i % OWNERS}`, 'ref');
        },
      ),
    );
    const check = (subject: object, feature: string) =>
      call('POST', 'entitlements/check', { subject, feature });
    results.push(
      await run('check: flag (ai_nodes) by org', 'org index read + subscription read', async (i) => {
        await check({ orgId: `org${i % OWNERS}` }, 'ai_nodes');
      }),
    );
    results.push(
      await run(
        'check: workflows_per_org by org',
        'org index + subscription + partition range count',
        async (i) => {
          await check({ orgId: `org${i % OWNERS}` }, 'workflows_per_org');
        },
      ),
    );
    results.push(
      await run(
        'check: executions by workflow',
        'workflow index + org index + subscription + counter',
        async (i) => {
          await check({ workflowId: `wf${i % OWNERS}-${i % WORKFLOWS_PER_OWNER}` }, 'executions');
        },
      ),
    );

    writeReport('entitlements', {
      parameters: {
        owners: OWNERS,
        workflowsPerOwner: WORKFLOWS_PER_OWNER,
        concurrency: CONCURRENCY,
        opsPerRound: OPS_PER_ROUND,
        rounds: ROUNDS,
        catalogFreeWorkflowsPerOrg: catalog.free.limits.workflows_per_org,
      },
      results,
    });
  } finally {
    host.kill('SIGINT');
    await new Promise((resolve) => host.once('exit', resolve));
    await azurite.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
