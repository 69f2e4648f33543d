/**
 * `npm run bench`: entitlement checks over HTTP against the local host, beside a baseline measured in the
 * same run on the same Azurite: raw Table Storage point reads through the SDK. Writes JSON to
 * bench/results/. Numbers are only comparable within one file (same machine, same moment).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TableClient } from '@azure/data-tables';
import { catalog } from '../src/billing/catalog.js';
import { freePort, startAzurite } from '../src/local/azurite.js';
import { LOCAL_DEFAULTS } from '../src/local/defaults.js';
import { mintToken } from '../src/local/token.js';

const OWNERS = 200;
const WORKFLOWS_PER_OWNER = 4;
const CONCURRENCY = 16;
const OPS_PER_ROUND = 3_000;
const ROUNDS = 3;

interface RoundResult {
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly rounds: readonly RoundResult[];
  /** Medians over rounds. */
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};
const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
const round2 = (n: number) => Math.round(n * 100) / 100;

/** Runs `op` OPS_PER_ROUND times with CONCURRENCY in flight, ROUNDS times after one warm-up round. */
async function measure(
  name: string,
  description: string,
  op: (i: number) => Promise<void>,
): Promise<ScenarioResult> {
  const round = async (): Promise<RoundResult> => {
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < OPS_PER_ROUND) {
          const i = next++;
          const t0 = performance.now();
          await op(i);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      opsPerSecond: Math.round(OPS_PER_ROUND / elapsed),
      p50Ms: round2(percentile(latencies, 50)),
      p99Ms: round2(percentile(latencies, 99)),
    };
  };
  await round(); // warm-up: connections, JIT, table creation
  const rounds: RoundResult[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round());
  const result = {
    name,
    description,
    rounds,
    opsPerSecond: median(rounds.map((r) => r.opsPerSecond)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
  };
  console.log(
    `${name.padEnd(34)} ${String(result.opsPerSecond).padStart(6)} ops/s  p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms`,
  );
  return result;
}

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
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
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
    const results: ScenarioResult[] = [];
    results.push(
      await measure(
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
      await measure('check: flag (ai_nodes) by org', 'org index read + subscription read', async (i) => {
        await check({ orgId: `org${i % OWNERS}` }, 'ai_nodes');
      }),
    );
    results.push(
      await measure(
        'check: workflows_per_org by org',
        'org index + subscription + partition range count',
        async (i) => {
          await check({ orgId: `org${i % OWNERS}` }, 'workflows_per_org');
        },
      ),
    );
    results.push(
      await measure(
        'check: executions by workflow',
        'workflow index + org index + subscription + counter',
        async (i) => {
          await check({ workflowId: `wf${i % OWNERS}-${i % WORKFLOWS_PER_OWNER}` }, 'executions');
        },
      ),
    );

    const baseline = results[0];
    const report = {
      command: 'npm run bench',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memoryGiB: round2(os.totalmem() / 2 ** 30),
        platform: `${os.platform()} ${os.release()}`,
        node: process.version,
      },
      parameters: {
        owners: OWNERS,
        workflowsPerOwner: WORKFLOWS_PER_OWNER,
        concurrency: CONCURRENCY,
        opsPerRound: OPS_PER_ROUND,
        rounds: ROUNDS,
        catalogFreeWorkflowsPerOrg: catalog.free.limits.workflows_per_org,
      },
      results: results.map((r) => ({
        ...r,
        vsBaseline: baseline
          ? {
              throughputRatio: round2(r.opsPerSecond / baseline.opsPerSecond),
              p50Ratio: round2(r.p50Ms / baseline.p50Ms),
            }
          : null,
      })),
    };
    const dir = path.join(root, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `entitlements-${report.at.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nWrote ${path.relative(root, file)}`);
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
