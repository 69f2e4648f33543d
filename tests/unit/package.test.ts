import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  buildPackage,
  checkImports,
  compileApp,
  PackageError,
  type PackageResult,
  productionDependencies,
  projectRoot,
} from '../../scripts/package.js';
import { readZipEntries, readZipEntry, type ZipEntry } from '../../scripts/zip.js';

/**
 * What `npm run package` ships. The zip is built here as the script builds it, with differences that only
 * save time: the app is compiled once (`compileApp`, the script's own step) with `--noCheck` (types are
 * checked by `npm run typecheck`) and packaged from there, and the full zip stores its entries instead of
 * deflating them (a second zip without node_modules is deflated, and `unzip -t` reads both). Which compiled
 * files ship, which dependencies are copied and the import check are the script's real code.
 */

let dir: string;
let compiled: string;
let result: PackageResult;
let zip: Buffer;
let entries: ZipEntry[];
let names: Set<string>;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'package-test-'));
  compiled = path.join(dir, 'compiled');
  compileApp(projectRoot, compiled, false);
  result = buildPackage({ out: path.join(dir, 'app.zip'), dist: compiled, level: 0 });
  zip = readFileSync(result.out);
  entries = readZipEntries(zip);
  names = new Set(entries.map((entry) => entry.name));
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const under = (prefix: string) => [...names].filter((name) => name.startsWith(prefix));

describe('npm run package: the deployment zip', () => {
  it('holds host.json and a package.json without scripts or devDependencies', () => {
    const entry = (name: string) => {
      const found = entries.find((e) => e.name === name);
      if (!found) throw new Error(`${name} is not in the zip`);
      return readZipEntry(zip, found).toString('utf8');
    };
    expect(entry('host.json')).toBe(readFileSync(path.join(projectRoot, 'host.json'), 'utf8'));
    const manifest: unknown = JSON.parse(entry('package.json'));
    const source = z
      .object({ dependencies: z.record(z.string(), z.string()) })
      .parse(JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')));
    expect(manifest).toMatchObject({
      main: 'dist/src/functions/*.js',
      type: 'module',
      dependencies: source.dependencies,
    });
    expect(manifest).not.toHaveProperty('devDependencies');
    expect(manifest).not.toHaveProperty('scripts');
  });

  it('holds every function, compiled', () => {
    const functions = readdirSync(path.join(projectRoot, 'src/functions')).filter((f) => f.endsWith('.ts'));
    expect(functions.length).toBeGreaterThan(10);
    for (const file of functions)
      expect(names).toContain(`dist/src/functions/${file.replace(/\.ts$/, '.js')}`);
  });

  it('leaves out the local host, the Stripe sandbox, the bench, the tests and the scripts', () => {
    for (const prefix of [
      'dist/src/local/',
      'dist/tools/',
      'tools/',
      'dist/bench/',
      'dist/tests/',
      'dist/scripts/',
      'bench/',
      'tests/',
      'scripts/',
      'src/',
    ])
      expect(under(prefix), prefix).toEqual([]);
    expect([...names].filter((name) => name.startsWith('dist/') && !name.endsWith('.js'))).toEqual([]);
  });

  it('holds the production dependencies and no development ones', () => {
    expect(names).toContain('node_modules/stripe/package.json');
    expect(names).toContain('node_modules/@azure/functions/package.json');
    // (@types/node is not among them: a production package, @types/is-buffer, depends on it, so
    // `npm ci --omit=dev` installs it too; without its .d.ts files only its license and manifest remain.)
    for (const dev of ['vitest', 'azurite', 'typescript', 'tsx', '@biomejs/biome', 'esbuild'])
      expect(under(`node_modules/${dev}/`), dev).toEqual([]);
    // Each production package of the lock file is there (optional ones only when installed).
    const packages = productionDependencies().filter((d) => !d.optional);
    expect(packages.length).toBeGreaterThan(20);
    for (const dependency of packages) expect(names).toContain(`${dependency.path}/package.json`);
    expect([...names].filter((name) => /\.(d\.ts|map)$/.test(name))).toEqual([]);
  });

  it('loads: every function file imports with only what the zip holds', () => {
    const extracted = path.join(dir, 'extracted');
    for (const entry of entries) {
      const file = path.join(extracted, entry.name);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, readZipEntry(zip, entry));
    }
    // A fresh Node in the extracted tree (outside the project, so nothing resolves from its node_modules),
    // as the Functions host loads "main"; the functions read their settings only when invoked.
    const script = `import { readdirSync } from 'node:fs';
      for (const f of readdirSync('dist/src/functions')) await import('./dist/src/functions/' + f);
      console.log('loaded');`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: extracted,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('loaded');
  });

  it('is a zip that unzip reads, deflated entries included', () => {
    const unzip = spawnSync('unzip', ['-tq', result.out], { encoding: 'utf8' });
    if (unzip.error) {
      // No unzip on this machine: the reader above (central directory, local headers, CRCs) still ran.
      console.warn('unzip not found: the archive was checked with scripts/zip.ts only');
      return;
    }
    expect(unzip.status, unzip.stdout + unzip.stderr).toBe(0);
    const small = buildPackage({
      out: path.join(dir, 'deflated.zip'),
      dist: compiled,
      dependencies: false,
      level: 6,
    });
    const deflated = readZipEntries(readFileSync(small.out));
    expect(deflated.some((entry) => entry.method === 8)).toBe(true);
    expect(spawnSync('unzip', ['-tq', small.out]).status).toBe(0);
  });
});

describe('npm run package: the import check', () => {
  const files = (extra: Record<string, string>) =>
    new Map(
      Object.entries({ 'dist/src/functions/a.js': "import { b } from '../billing/b.js';\n", ...extra }),
    );

  it('passes shipped relative imports, builtins and production dependencies', () => {
    expect(() =>
      checkImports(
        files({
          'dist/src/billing/b.js':
            "import { z } from 'zod';\nimport fs from 'node:fs';\nexport const b = 1;\n",
        }),
        { zod: '^4' },
      ),
    ).not.toThrow();
  });

  it.each([
    ['the Stripe sandbox', "import { s } from '../../tools/stripe-sandbox/index.js';", 'forbidden_import'],
    ['the local host', "export * from '../local/server.js';", 'forbidden_import'],
    ['a file not shipped', "import '../billing/gone.js';", 'missing_import'],
    ['a dev dependency', "import { describe } from 'vitest';", 'undeclared_dependency'],
    ['a computed dynamic import', 'const m = await import(name);', 'unverifiable_import'],
  ])('refuses a shipped file that imports %s', (_what, line, code) => {
    const check = () =>
      checkImports(files({ 'dist/src/billing/b.js': `${line}\nexport const b = 1;\n` }), {});
    expect(check).toThrow(PackageError);
    try {
      check();
    } catch (error) {
      expect(error instanceof PackageError && error.code).toBe(code);
    }
  });
});
