/**
 * `npm run package`: the deployment zip for Azure Functions (run from package; infra/README.md).
 *
 *   tsx scripts/package.ts [--out <zip>] [--dist <compiled dir>] [--no-check] [--no-deps] [--level <0-9>]
 *
 * Contents: `host.json`; a `package.json` without scripts and devDependencies; the compiled `src/**` as
 * `dist/src/**`, except the local host (a development tool that must never run in Azure; the Stripe
 * sandbox lives in `tools/`, outside `src/`, and is never compiled in); and the production dependencies as the lock file lists them, copied from the installed
 * `node_modules` (the versions the tests ran, nothing downloaded), without type declarations and source maps.
 *
 * It refuses to write a zip whose code could fail at load: a shipped file importing a file left out (the
 * sandbox, the local host) or missing, or a package that is not a production dependency.
 *
 * By default the app is compiled afresh (type-checked) into a staging directory, so stale files in `dist/`
 * never ship. `--dist dist` packages an existing build instead; `--no-check` skips type checking (the
 * tests use it: `npm run typecheck` checks types); `--no-deps` leaves `node_modules` out (tests only).
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { writeZip, type ZipEntry, type ZipSource } from './zip.js';

export type PackageErrorCode =
  | 'build_failed'
  | 'forbidden_import'
  | 'missing_import'
  | 'undeclared_dependency'
  | 'unverifiable_import'
  | 'dependency_missing'
  | 'dependency_mismatch'
  | 'no_entry_points'
  | 'bad_input';

export class PackageError extends Error {
  constructor(
    readonly code: PackageErrorCode,
    message: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PackageError';
  }
}

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Compiled source directories that never ship, relative to the compiled `src/`: development tools only.
 * Production code must not import them; `checkImports` fails the package if it does.
 */
export const EXCLUDED_SOURCE_DIRS = ['local'] as const;

const packageJsonSchema = z.object({
  name: z.string(),
  version: z.string(),
  private: z.boolean().optional(),
  description: z.string().optional(),
  type: z.literal('module'),
  main: z.string(),
  engines: z.record(z.string(), z.string()).optional(),
  dependencies: z.record(z.string(), z.string()).default({}),
});

const lockSchema = z.object({
  lockfileVersion: z.number().int().min(2),
  packages: z.record(
    z.string(),
    z.object({
      version: z.string().optional(),
      dev: z.boolean().optional(),
      optional: z.boolean().optional(),
      link: z.boolean().optional(),
    }),
  ),
});

function parseJsonFile<T>(file: string, schema: z.ZodType<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new PackageError('bad_input', `Cannot read ${file} as JSON.`, { cause: error });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success)
    throw new PackageError(
      'bad_input',
      `${file} is not what packaging expects: ${z.prettifyError(parsed.error)}`,
    );
  return parsed.data;
}

export interface Dependency {
  /** Directory relative to the project, as in the lock file: `node_modules/a/node_modules/b`. */
  readonly path: string;
  readonly version: string;
  readonly optional: boolean;
}

/**
 * The packages `npm ci --omit=dev` would install: every lock file entry not marked `dev`. Read from the
 * lock file rather than from `npm ls --omit=dev`, which also reports problems with extraneous packages
 * and a symlinked `node_modules` (a worktree's) and then exits non-zero.
 */
export function productionDependencies(root = projectRoot): Dependency[] {
  const lock = parseJsonFile(path.join(root, 'package-lock.json'), lockSchema);
  return Object.entries(lock.packages)
    .filter(([location, entry]) => location.startsWith('node_modules/') && !entry.dev && !entry.link)
    .map(([location, entry]) => ({
      path: location,
      version: entry.version ?? '',
      optional: entry.optional === true,
    }))
    .sort((a, b) => a.path.localeCompare(b.path));
}

/** Runtime-irrelevant files of dependencies: Node never loads type declarations or source maps. */
const SKIPPED_DEPENDENCY_FILE = /\.(d\.ts|d\.mts|d\.cts|map|tsbuildinfo)$/;

function* filesUnder(dir: string, skipDir: (name: string) => boolean = () => false): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skipDir(entry.name)) yield* filesUnder(full, skipDir);
    } else if (entry.isFile() || (entry.isSymbolicLink() && statSync(full).isFile())) {
      yield full;
    }
  }
}

/** The files of the installed production dependencies, as zip sources under `node_modules/`. */
export function* dependencySources(root = projectRoot, dependencies = productionDependencies(root)) {
  for (const dependency of dependencies) {
    const dir = path.join(root, dependency.path);
    if (!existsSync(path.join(dir, 'package.json'))) {
      if (dependency.optional) continue; // an optional package for another platform
      throw new PackageError(
        'dependency_missing',
        `${dependency.path} is in package-lock.json but not installed. Run \`npm ci\` first.`,
      );
    }
    const installed = parseJsonFile(path.join(dir, 'package.json'), z.object({ version: z.string() }));
    if (installed.version !== dependency.version) {
      throw new PackageError(
        'dependency_mismatch',
        `${dependency.path} is ${installed.version} in node_modules but ${dependency.version} in package-lock.json. Run \`npm ci\` first.`,
      );
    }
    // A nested node_modules holds packages of its own, listed (or not, when dev-only) in the lock file.
    for (const file of filesUnder(dir, (name) => name === 'node_modules')) {
      if (SKIPPED_DEPENDENCY_FILE.test(file)) continue;
      const mode = statSync(file).mode & 0o777;
      yield {
        name: toZipPath(path.relative(root, file)),
        data: readFileSync(file),
        mode,
      } satisfies ZipSource;
    }
  }
}

const toZipPath = (relative: string) => relative.split(path.sep).join('/');

/** Module specifiers in compiled ESM: static imports and re-exports, side-effect imports, literal `import()`. */
const STATIC_IMPORT =
  /(?:^|[;\s])(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[;\s])import\s*['"]([^'"]+)['"]/g;
const DYNAMIC_IMPORT = /\bimport\s*\(\s*(['"]?)([^'")\s]*)\1?\s*\)?/g;

export function importsOf(code: string): { readonly specifiers: string[]; readonly unverifiable: string[] } {
  const specifiers: string[] = [];
  const unverifiable: string[] = [];
  for (const match of code.matchAll(STATIC_IMPORT)) {
    const specifier = match[1] ?? match[2];
    if (specifier) specifiers.push(specifier);
  }
  for (const match of code.matchAll(DYNAMIC_IMPORT)) {
    if (match[1] && match[2]) specifiers.push(match[2]);
    else unverifiable.push(match[0]);
  }
  return { specifiers, unverifiable };
}

const BUILTINS = new Set(builtinModules);
const packageNameOf = (specifier: string) =>
  specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] ?? '');

/**
 * Every import of every shipped file must load in Azure: a relative import must name a shipped file,
 * and a package must be a production dependency (declared in package.json, not merely hoisted there).
 * `files` maps zip paths (`dist/src/...`) to their code.
 */
export function checkImports(
  files: ReadonlyMap<string, string>,
  dependencies: Readonly<Record<string, string>>,
): void {
  const problems: Array<{ readonly code: PackageErrorCode; readonly text: string }> = [];
  for (const [file, code] of files) {
    if (!file.endsWith('.js')) continue;
    const { specifiers, unverifiable } = importsOf(code);
    for (const expression of unverifiable)
      problems.push({
        code: 'unverifiable_import',
        text: `${file}: ${expression} (not a literal; cannot check)`,
      });
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
        if (files.has(target)) continue;
        // The local host, and `tools/` (the Stripe sandbox), which lives outside `src/` and never compiles in.
        const excluded =
          EXCLUDED_SOURCE_DIRS.some((dir) => target.startsWith(`dist/src/${dir}/`)) ||
          target.startsWith('dist/tools/');
        problems.push(
          excluded
            ? {
                code: 'forbidden_import',
                text: `${file} imports ${target}, a development tool that never ships`,
              }
            : { code: 'missing_import', text: `${file} imports ${target}, which is not in the package` },
        );
      } else if (!specifier.startsWith('node:') && !BUILTINS.has(specifier)) {
        const name = packageNameOf(specifier);
        if (!(name in dependencies))
          problems.push({
            code: 'undeclared_dependency',
            text: `${file} imports ${specifier}, but ${name} is not in package.json dependencies`,
          });
      }
    }
  }
  const first = problems[0];
  if (first)
    throw new PackageError(
      first.code,
      `The package would not load in Azure:\n${problems.map((p) => `  - ${p.text}`).join('\n')}`,
    );
}

export interface PackageOptions {
  readonly root?: string;
  /** The zip to write. */
  readonly out: string;
  /** An existing compiled directory (tsc's outDir) to package instead of compiling afresh. */
  readonly dist?: string;
  /** Type-check while compiling (default true). */
  readonly check?: boolean;
  /** Include the production dependencies (default true). */
  readonly dependencies?: boolean;
  /** Deflate level, 0-9. */
  readonly level?: number;
}

export interface PackageResult {
  readonly out: string;
  readonly entries: readonly ZipEntry[];
  readonly appFiles: number;
  readonly dependencies: readonly Dependency[] | undefined;
  readonly bytes: number;
}

/**
 * Compiles `src/` without the excluded directories into `outDir`. tsc still compiles an excluded file that
 * production code imports, and `checkImports` then refuses the package, naming the import.
 */
export function compileApp(root: string, outDir: string, check: boolean): void {
  const config = path.join(outDir, 'tsconfig.package.json');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    config,
    JSON.stringify({
      extends: path.join(root, 'tsconfig.json'),
      compilerOptions: {
        outDir,
        rootDir: root,
        // Types are looked up beside the config file, which lives in the staging directory.
        typeRoots: [path.join(root, 'node_modules/@types')],
        sourceMap: false,
        noEmit: false,
        incremental: false,
      },
      include: [path.join(root, 'src')],
      exclude: EXCLUDED_SOURCE_DIRS.map((dir) => path.join(root, 'src', dir)),
    }),
  );
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', config, ...(check ? [] : ['--noCheck'])], {
    cwd: root,
    encoding: 'utf8',
  });
  if (result.status !== 0)
    throw new PackageError('build_failed', `tsc failed:\n${result.stdout}${result.stderr}`, {
      cause: result.error,
    });
}

export function buildPackage(options: PackageOptions): PackageResult {
  const root = options.root ?? projectRoot;
  const pkg = parseJsonFile(path.join(root, 'package.json'), packageJsonSchema);
  const staging = options.dist ? undefined : mkdtempSync(path.join(os.tmpdir(), 'billing-package-'));
  try {
    const compiled = options.dist ? path.resolve(root, options.dist) : (staging ?? '');
    if (staging) compileApp(root, staging, options.check ?? true);
    const compiledSrc = path.join(compiled, 'src');
    if (!existsSync(compiledSrc))
      throw new PackageError('bad_input', `${compiledSrc} does not exist: build first (npm run build).`);

    const app = new Map<string, string>();
    for (const file of filesUnder(compiledSrc)) {
      if (!/\.(js|json)$/.test(file)) continue; // no source maps or declarations: the .ts is not shipped
      const relative = toZipPath(path.relative(compiledSrc, file));
      if (EXCLUDED_SOURCE_DIRS.some((dir) => relative.startsWith(`${dir}/`))) continue;
      app.set(`dist/src/${relative}`, readFileSync(file, 'utf8'));
    }
    checkImports(app, pkg.dependencies);
    const mainPattern = new RegExp(`^${pkg.main.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]+')}$`);
    if (![...app.keys()].some((name) => mainPattern.test(name)))
      throw new PackageError(
        'no_entry_points',
        `No compiled file matches package.json "main" (${pkg.main}).`,
      );

    const manifest = {
      name: pkg.name,
      version: pkg.version,
      private: pkg.private,
      description: pkg.description,
      type: pkg.type,
      main: pkg.main,
      engines: pkg.engines,
      dependencies: pkg.dependencies,
    };
    const dependencies = options.dependencies === false ? undefined : productionDependencies(root);
    function* sources(): Generator<ZipSource> {
      yield { name: 'host.json', data: readFileSync(path.join(root, 'host.json')) };
      yield { name: 'package.json', data: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`) };
      for (const [name, code] of [...app].sort(([a], [b]) => a.localeCompare(b)))
        yield { name, data: Buffer.from(code) };
      if (dependencies) yield* dependencySources(root, dependencies);
    }
    const out = path.resolve(root, options.out);
    mkdirSync(path.dirname(out), { recursive: true });
    const entries = writeZip(out, sources(), options.level ?? 6);
    return { out, entries, appFiles: app.size, dependencies, bytes: statSync(out).size };
  } finally {
    if (staging) rmSync(staging, { recursive: true, force: true });
  }
}

function parseArgs(argv: readonly string[]): PackageOptions {
  const options: { -readonly [K in keyof PackageOptions]: PackageOptions[K] } = {
    out: 'artifacts/billing-backend.zip',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new PackageError('bad_input', `${arg} needs a value`);
      return next;
    };
    if (arg === '--out') options.out = value();
    else if (arg === '--dist') options.dist = value();
    else if (arg === '--no-check') options.check = false;
    else if (arg === '--no-deps') options.dependencies = false;
    else if (arg === '--level') {
      const level = z.coerce.number().int().min(0).max(9).safeParse(value());
      if (!level.success) throw new PackageError('bad_input', '--level must be 0-9');
      options.level = level.data;
    } else throw new PackageError('bad_input', `Unknown option ${arg}`);
  }
  return options;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const started = performance.now();
    const result = buildPackage(parseArgs(process.argv.slice(2)));
    const deps = result.dependencies
      ? `${result.dependencies.length} production packages`
      : 'no node_modules';
    console.log(
      `Wrote ${path.relative(process.cwd(), result.out)}: ${result.entries.length} entries (${result.appFiles} app files, ${deps}), ${(result.bytes / 2 ** 20).toFixed(1)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  } catch (error) {
    console.error(error instanceof PackageError ? `package: ${error.message}` : error);
    process.exit(1);
  }
}
