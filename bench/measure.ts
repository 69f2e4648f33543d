import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shared by every benchmark: timing, medians, and the JSON report with the command and machine. */

/**
 * `--quick` (`npm run bench:quick`): fewer rounds, operations and owners, so the three scripts finish in
 * about two minutes and CI can run them on every change: the point there is that every scenario still
 * runs to the end without an error, not the figures, which are noisier than a full run's.
 */
export const QUICK = process.argv.includes('--quick');

/** The full value, or the quick one under `--quick`. */
export const sized = <T>(full: T, quick: T): T => (QUICK ? quick : full);

/** Other work on the machine skews every figure here (baselines included): recorded with each result. */
export const loadAverage = () => os.loadavg().map(round2);

export type BenchErrorCode =
  /** A scenario's operation failed (an HTTP error, a storage error, a process that exited). */
  | 'scenario_failed'
  /** A scenario ran but left the wrong state (a counter, a count of closed periods, poisoned events). */
  | 'wrong_result';

/** A benchmark that cannot produce its figures; the script exits non-zero. */
export class BenchError extends Error {
  constructor(
    readonly code: BenchErrorCode,
    message: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BenchError';
  }
}

/**
 * Runs a benchmark script's `main`; any error (a scenario that throws included) is printed and the
 * process exits with 1, so `npm run bench:quick` fails when a scenario errors.
 */
export function runBench(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
export interface RoundResult {
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Storage attempts per operation, where the operation reports them (retries under contention). */
  readonly attemptsPerOp: number;
}

export interface Measured extends RoundResult {
  readonly name: string;
  /** `os.loadavg()` (1, 5, 15 minutes) right before the scenario's warm-up round. */
  readonly loadAverageBefore: readonly number[];
  readonly description: string;
  readonly ops: number;
  readonly concurrency: number;
  readonly rounds: readonly RoundResult[];
}

export const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};
export const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
export const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * Runs `op` `count` times with `concurrency` in flight: one warm-up round (round -1), then `rounds`
 * measured rounds; reports the median of the rounds' throughput, latency percentiles and attempts per
 * operation (`op` may return how many storage attempts it took as a number; anything else counts as one).
 */
export async function measure(
  name: string,
  description: string,
  count: number,
  concurrency: number,
  rounds: number,
  op: (i: number, round: number) => Promise<unknown>,
  beforeRound?: () => void | Promise<void>,
): Promise<Measured> {
  const runRound = async (round: number): Promise<RoundResult> => {
    await beforeRound?.();
    const latencies: number[] = [];
    let attempts = 0;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          const i = next++;
          const t0 = performance.now();
          const result = await op(i, round); // not `attempts += await …`: that reads before awaiting
          attempts += typeof result === 'number' ? result : 1;
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      opsPerSecond: Math.round(count / elapsed),
      p50Ms: round2(percentile(latencies, 50)),
      p99Ms: round2(percentile(latencies, 99)),
      attemptsPerOp: round2(attempts / count),
    };
  };
  const loadAverageBefore = loadAverage();
  await runRound(-1); // warm-up: connections, JIT, table creation
  const measured: RoundResult[] = [];
  for (let r = 0; r < rounds; r++) measured.push(await runRound(r));
  const result: Measured = {
    name,
    description,
    loadAverageBefore,
    ops: count,
    concurrency,
    rounds: measured,
    opsPerSecond: median(measured.map((r) => r.opsPerSecond)),
    p50Ms: median(measured.map((r) => r.p50Ms)),
    p99Ms: median(measured.map((r) => r.p99Ms)),
    attemptsPerOp: median(measured.map((r) => r.attemptsPerOp)),
  };
  const attemptsNote = result.attemptsPerOp === 1 ? '' : `  attempts/op ${result.attemptsPerOp}`;
  console.log(
    `${name.padEnd(46)} ${String(result.opsPerSecond).padStart(6)} ops/s  p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms${attemptsNote}`,
  );
  return result;
}

/** The repository root, found by walking up to package.json (works from bench/ under tsx and dist/bench/). */
export const projectRoot = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();

/** `bench/results/<kind>[-quick]-<time>.json`: quick runs are kept apart from full ones. */
export function reportFile(kind: string, at: string): string {
  const dir = path.join(projectRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  return path.join(dir, `${kind}${QUICK ? '-quick' : ''}-${at.replace(/[:.]/g, '-')}.json`);
}

/**
 * Writes `bench/results/<kind>-<time>.json` with the command, the machine and the results; each result
 * gets its ratios to the baseline measured before it in the same run.
 */
export function writeReport(
  kind: string,
  body: { parameters: object; results: readonly Measured[]; [k: string]: unknown },
) {
  let baseline: Measured | undefined;
  const results = body.results.map((r) => {
    if (r.name.startsWith('baseline')) {
      baseline = r;
      return { ...r, vsBaseline: null };
    }
    return {
      ...r,
      vsBaseline: baseline
        ? {
            baseline: baseline.name,
            throughputRatio: round2(r.opsPerSecond / baseline.opsPerSecond),
            p50Ratio: round2(r.p50Ms / baseline.p50Ms),
          }
        : null,
    };
  });
  const at = new Date().toISOString();
  const report = {
    command: QUICK ? 'npm run bench:quick' : 'npm run bench',
    quick: QUICK,
    at,
    durationSeconds: round2(performance.now() / 1000),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: round2(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()}`,
      node: process.version,
      // Other work on the machine skews every figure, baselines included: recorded with the results
      // (and before each scenario, in its result).
      loadAverage: loadAverage(),
    },
    ...body,
    results,
  };
  const file = reportFile(kind, at);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`Wrote ${path.relative(projectRoot, file)}\n`);
}
