import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(path.join(root, dir), { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

/** Every relative module specifier of a file, resolved against the repository root. */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(path.join(root, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1] ?? '');
  return specifiers.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)));
}

/*
 * `tools/` never ships (the deployment zip leaves it out), so code that ships must not import it: only the
 * local host (`src/local/`, itself left out of the zip) starts the sandbox. The sandbox, in turn, stands
 * alone: it imports nothing from `src/`, so it can move or be replaced without touching production code.
 */
describe('the boundary between shipped code and development tools', () => {
  it('keeps tools/ out of every import in src/ except the local host', async () => {
    const offenders: string[] = [];
    for (const file of await sourceFiles('src')) {
      if (file.startsWith('src/local/')) continue;
      for (const target of await importsOf(file)) {
        if (target.startsWith('tools/')) offenders.push(`${file} -> ${target}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('keeps the Stripe sandbox independent of src/', async () => {
    const offenders: string[] = [];
    for (const file of await sourceFiles('tools/stripe-sandbox')) {
      for (const target of await importsOf(file)) {
        if (target.startsWith('src/')) offenders.push(`${file} -> ${target}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
