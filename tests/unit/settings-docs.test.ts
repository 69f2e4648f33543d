import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SETTING_NAMES } from '../../src/config.js';

/** Every setting `loadConfig` reads is in the README's configuration table and in the sample settings file. */
describe('settings documentation', () => {
  it('the README names every setting', () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(SETTING_NAMES.filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });

  it('local.settings.sample.json lists every setting, and nothing the code does not read', () => {
    const sample = z
      .object({ Values: z.record(z.string(), z.string()) })
      .parse(JSON.parse(readFileSync('local.settings.sample.json', 'utf8')));
    const listed = Object.keys(sample.Values);
    // Read by the Functions host itself, not by loadConfig.
    const host = ['AzureWebJobsStorage', 'FUNCTIONS_WORKER_RUNTIME'];
    expect(SETTING_NAMES.filter((name) => !listed.includes(name))).toEqual([]);
    expect(listed.filter((name) => !SETTING_NAMES.includes(name) && !host.includes(name))).toEqual([]);
  });
});
