/**
 * `npm run bench` (first script): entitlement checks over HTTP against the local host in its own
 * process, by subject (user, organization, workflow) and feature (a flag, an allocation limit,
 * executions), for an owner with 10 items and one with 10,000, beside a baseline measured in the same
 * run on the same Azurite: a raw Table Storage point read through the SDK. Both owners are on the free
 * plan and over its limits (recorded with `enforce: false`), the case that once cost 8 round trips and
 * grew with the owner. Then, in this process, the storage calls each operation makes, counted at the
 * port. Writes JSON to bench/results/; numbers compare only within one file (same machine, same moment).
 * `--quick`: an owner with 1,000 items instead of 10,000, one round of 200 operations per scenario.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { TableClient } from '@azure/data-tables';
import { createAzureTable } from '../src/adapters/tables/azure-table.js';
import { observeTable } from '../src/adapters/tables/observed-table.js';
import { catalog } from '../src/billing/catalog.js';
import { createServices } from '../src/composition.js';
import { loadConfig } from '../src/config.js';
import { tenantOf } from '../src/http/tenant.js';
import { freePort, startAzurite } from '../src/local/azurite.js';
import { LOCAL_DEFAULTS, withLocalDefaults } from '../src/local/defaults.js';
import { mintToken } from '../src/local/token.js';
import { benchFeed } from './feed.js';
import {
  BenchError,
  type Measured,
  measure,
  median,
  projectRoot,
  round2,
  runBench,
  sized,
  writeReport,
} from './measure.js';

const SIZES = { small: 10, big: sized(10_000, 1_000) } as const;
const CONCURRENCY = 16;
const OPS_PER_ROUND = sized(2_000, 200);
const ROUNDS = sized(3, 1);
const SEED_CONCURRENCY = 32;

const run = (name: string, description: string, op: (i: number) => Promise<void>) =>
  measure(name, description, OPS_PER_ROUND, CONCURRENCY, ROUNDS, op);

async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new BenchError('scenario_failed', `local host exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/api/health`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new BenchError('scenario_failed', 'local host did not become healthy within 30 s');
}

/** Runs `work(i)` for i < count, `concurrency` at a time. */
async function inParallel(count: number, concurrency: number, work: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

async function main(): Promise<void> {
  const azurite = await startAzurite();
  const port = await freePort();
  const prefix = `bench${Date.now().toString(36)}`;
  // The host runs in its own process, as it would in production; this process only generates load.
  const host = spawn(process.execPath, [path.join(projectRoot, 'dist/src/local/main.js')], {
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
    // Node's http client on kept-alive sockets: a lighter load generator than fetch, so the figures
    // are the host's and not the client's (they share the machine).
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
    const call = (method: string, route: string, body: unknown) =>
      new Promise<string>((resolve, reject) => {
        const data = JSON.stringify(body);
        const request = http.request(
          {
            host: '127.0.0.1',
            port,
            path: `/api/${route}`,
            method,
            agent,
            headers: {
              authorization: `Bearer ${service}`,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(data),
            },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              const text = Buffer.concat(chunks).toString();
              const status = response.statusCode ?? 0;
              if (status >= 200 && status < 300) resolve(text);
              else reject(new BenchError('scenario_failed', `${method} ${route}: ${status} ${text}`));
            });
            response.on('error', reject);
          },
        );
        request.on('error', reject);
        request.end(data);
      });

    const seedStarted = Date.now();
    for (const [size, items] of Object.entries(SIZES)) {
      console.log(
        `Seeding owner ${size}: an organization with ${items} workflows (free plan, recorded as a backfill) ...`,
      );
      await call('PUT', `directory/orgs/${size}-org`, { creatorId: size });
      await inParallel(items, SEED_CONCURRENCY, (w) =>
        call('PUT', `directory/workflows/${size}-${w}`, {
          workspace: { orgId: `${size}-org` },
          nodeCount: 5,
          enforce: false,
        }),
      );
    }
    const seedSeconds = round2((Date.now() - seedStarted) / 1000);
    console.log(`Seeded in ${seedSeconds} s`);

    const baselineClient = TableClient.fromConnectionString(azurite.connectionString, `${prefix}billing`, {
      allowInsecureConnection: true,
    });
    const results: Measured[] = [];
    // The baseline is a raw point read in the same owner's partition, measured right before that
    // owner's checks: Azurite (unlike Table Storage) finds a row by scanning its partition, so even a
    // raw point read is slower in the partition of the owner with 10,000 items, and a check is compared
    // with what the emulator does for that owner.
    const baseline = (size: string, items: number) =>
      run(
        `baseline: table point read, ${items} items`,
        `TableClient.getEntity of one row of the snapshot of the owner with ${items} workflows, no HTTP`,
        async () => {
          await baselineClient.getEntity(size, 's|o|alloc');
        },
      );
    // The baseline the earlier reports used (and the issue's figures were measured against): a point read
    // of an organization's index row, in a table of small partitions.
    const indexClient = TableClient.fromConnectionString(azurite.connectionString, `${prefix}directory`, {
      allowInsecureConnection: true,
    });
    const indexBaseline = () =>
      run(
        'baseline: index point read',
        'TableClient.getEntity of one organization index row, no HTTP',
        async (i) => {
          await indexClient.getEntity(`org:${i % 2 ? 'small' : 'big'}-org`, 'ref');
        },
      );
    const check = (subject: object, feature: string) =>
      call('POST', 'entitlements/check', { subject, feature });
    const subjects = {
      user: (size: string) => () => ({ userId: size }),
      org: (size: string) => () => ({ orgId: `${size}-org` }),
      workflow: (size: string, items: number) => (i: number) => ({
        workflowId: `${size}-${(i * 7919) % items}`,
      }),
    } as const;
    const features = { flag: 'ai_nodes', allocation: 'workflows', executions: 'executions' } as const;
    // For each subject, both owners one right after the other (the order alternating), so drift in the
    // machine's load over the run does not pass for a difference between the sizes.
    let flip = false;
    for (const [subjectName, make] of Object.entries(subjects)) {
      results.push(await indexBaseline());
      const sizes = Object.entries(SIZES);
      for (const [size, items] of flip ? sizes.reverse() : sizes) {
        results.push(await baseline(size, items));
        const subject = make(size, items);
        for (const [featureName, feature] of Object.entries(features)) {
          results.push(
            await run(
              `check: ${featureName} by ${subjectName}, ${items} items`,
              `POST /api/entitlements/check { subject: ${subjectName}, feature: ${feature} } for an owner over free limits with ${items} workflows`,
              async (i) => {
                await check(subject(i), feature);
              },
            ),
          );
        }
      }
      flip = !flip;
    }

    // In this process, over the same tables: the storage calls each operation makes.
    const counted = { calls: 0 };
    const countingTable = (name: string) =>
      observeTable(
        createAzureTable(
          { kind: 'connectionString', connectionString: azurite.connectionString },
          `${prefix}${name}`,
        ),
        (_method, _partition, run) => {
          counted.calls++;
          return run();
        },
      );
    const services = createServices(
      loadConfig(
        withLocalDefaults({
          ...process.env,
          BILLING_STORAGE_CONNECTION: azurite.connectionString,
          BILLING_TABLE_PREFIX: prefix,
        }),
      ),
      { tables: { directory: countingTable('directory'), billing: countingTable('billing') } },
    );
    const callsOf = async (work: () => Promise<unknown>) => {
      await work(); // warm: the organization's creator is remembered after the first look-up
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        counted.calls = 0;
        await work();
        samples.push(counted.calls);
      }
      return median(samples);
    };
    const calls: Record<string, number> = {};
    for (const [size, items] of Object.entries(SIZES)) {
      for (const [subjectName, make] of Object.entries(subjects)) {
        for (const [featureName, feature] of Object.entries(features)) {
          calls[`check ${featureName} by ${subjectName}, ${items} items`] = await callsOf(() =>
            services.entitlements.check({ subject: make(size, items)(1), feature }),
          );
        }
      }
      calls[`summary, ${items} items`] = await callsOf(async () => {
        const { ownerId, workspace } = await tenantOf(
          { userId: size, orgId: `${size}-org`, roles: new Set() },
          services.directory,
        );
        return services.summaries.forWorkspace(ownerId, workspace, size);
      });
      // A consumption needs a workflow the owner keeps (the rest are locked over the free limits).
      let kept = 0;
      while (
        (
          await services.entitlements.check({
            subject: { workflowId: `${size}-${kept}` },
            feature: 'executions',
          })
        ).reason === 'resource_locked'
      )
        kept++;
      let run = 0;
      calls[`consume by workflow, ${items} items`] = await callsOf(() =>
        services.usage.consume({
          subject: { workflowId: `${size}-${kept}` },
          meter: 'executions',
          quantity: 1,
          idempotencyKey: `calls-${size}-${run++}`,
        }),
      );
    }
    console.log('Storage calls per operation:', calls);

    // The entitlement feed's outbox: its cost per change, its rows per transaction, versioned checks.
    const feed = await benchFeed(azurite.connectionString, prefix);
    console.log('Entitlement feed:', feed.feed);

    const byName = new Map(results.map((r) => [r.name, r]));
    const sizeRatios: Record<string, number> = {};
    for (const subjectName of Object.keys(subjects)) {
      for (const featureName of Object.keys(features)) {
        const small = byName.get(`check: ${featureName} by ${subjectName}, ${SIZES.small} items`);
        const big = byName.get(`check: ${featureName} by ${subjectName}, ${SIZES.big} items`);
        if (small && big) sizeRatios[`${featureName} by ${subjectName}`] = round2(big.p50Ms / small.p50Ms);
      }
    }
    // The same ratio for Azurite's own point read, measured before each subject's checks.
    const baselines = (items: number) =>
      results.filter((r) => r.name === `baseline: table point read, ${items} items`);
    const rawPointRead = round2(
      median(baselines(SIZES.big).map((r) => r.p50Ms)) / median(baselines(SIZES.small).map((r) => r.p50Ms)),
    );
    sizeRatios['raw point read (Azurite)'] = rawPointRead;
    console.log(`p50 with ${SIZES.big} items / p50 with ${SIZES.small}:`, sizeRatios);

    // Each check beside the index point read measured before its subject's checks.
    const vsIndexPointRead: Record<string, number> = {};
    let lastIndexRead: Measured | undefined;
    for (const r of results) {
      if (r.name === 'baseline: index point read') lastIndexRead = r;
      else if (!r.name.startsWith('baseline') && lastIndexRead)
        vsIndexPointRead[r.name] = round2(r.opsPerSecond / lastIndexRead.opsPerSecond);
    }
    console.log('throughput / index point read:', vsIndexPointRead);

    writeReport('entitlements', {
      parameters: {
        sizes: SIZES,
        concurrency: CONCURRENCY,
        opsPerRound: OPS_PER_ROUND,
        rounds: ROUNDS,
        plan: 'free (over its limits)',
        freeWorkflowsPerOrg: catalog.free.limits.workflows_per_org,
        seedSeconds,
      },
      results,
      p50BigOverSmall: sizeRatios,
      throughputOverIndexPointRead: vsIndexPointRead,
      storageCallsPerOperation: calls,
      feedResults: feed.results,
      feed: feed.feed,
    });
    agent.destroy();
  } finally {
    host.kill('SIGINT');
    await new Promise((resolve) => host.once('exit', resolve));
    await azurite.stop();
  }
}

runBench(main);
