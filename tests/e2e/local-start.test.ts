import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/local/azurite.js';

/** `npm start` is `npm run build && node dist/src/local/main.js`; this runs the same entry point from source. */
function startLocal(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/local/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** The status of /api/health once the host answers it with 200, or the last answer after 30 s. */
async function healthy(port: number): Promise<number | undefined> {
  const started = Date.now();
  let health: Response | undefined;
  while (Date.now() - started < 30_000) {
    health = await fetch(`http://127.0.0.1:${port}/api/health`).catch(() => undefined);
    if (health?.ok) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return health?.status;
}

describe('the local host entry point (npm start)', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'billing-start-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts Azurite and answers /api/health within 30 s, then stops everything on Ctrl-C', async () => {
    const [port, blob, queue, table] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const local = startLocal({
      LOCAL_PORT: String(port),
      AZURITE_BLOB_PORT: String(blob),
      AZURITE_QUEUE_PORT: String(queue),
      AZURITE_TABLE_PORT: String(table),
      AZURITE_LOCATION: dataDir,
      STRIPE_SANDBOX_PORT: String(await freePort()),
      BILLING_STORAGE_CONNECTION: '',
    });
    const started = Date.now();
    let health: Response | undefined;
    while (Date.now() - started < 30_000) {
      health = await fetch(`http://127.0.0.1:${port}/api/health`).catch(() => undefined);
      if (health?.ok) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(health?.status, local.output()).toBe(200);
    expect(local.output()).toContain('npm run token');

    local.child.kill('SIGINT');
    expect(await local.exited).toBe(0);
    expect(await accepts(table)).toBe(false);
    expect(await accepts(port)).toBe(false);
  }, 60_000);

  it('takes Azurite down with it when killed (SIGKILL), so the next start gets its ports', async () => {
    const location = mkdtempSync(path.join(tmpdir(), 'billing-killed-'));
    try {
      const settings = {
        LOCAL_PORT: String(await freePort()),
        AZURITE_BLOB_PORT: String(await freePort()),
        AZURITE_QUEUE_PORT: String(await freePort()),
        AZURITE_TABLE_PORT: String(await freePort()),
        AZURITE_LOCATION: location,
        STRIPE_SANDBOX_PORT: String(await freePort()),
        BILLING_STORAGE_CONNECTION: '',
      };
      const table = Number(settings.AZURITE_TABLE_PORT);
      const first = startLocal(settings);
      expect(await healthy(Number(settings.LOCAL_PORT)), first.output()).toBe(200);
      expect(await accepts(table)).toBe(true);

      // No handler runs on SIGKILL: only the operating system closing the IPC channel tells Azurite.
      first.child.kill('SIGKILL');
      await first.exited;
      const deadline = Date.now() + 5_000;
      while ((await accepts(table)) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await accepts(table)).toBe(false);

      const second = startLocal(settings);
      expect(await healthy(Number(settings.LOCAL_PORT)), second.output()).toBe(200);
      second.child.kill('SIGINT');
      expect(await second.exited).toBe(0);
      expect(await accepts(table)).toBe(false);
    } finally {
      rmSync(location, { recursive: true, force: true });
    }
  }, 90_000);

  it('refuses to start on a bad setting, naming it', async () => {
    const local = startLocal({
      LOCAL_PORT: String(await freePort()),
      BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
      STRIPE_SANDBOX_PORT: String(await freePort()),
      AUTH_JWT_SECRET: 'too-short',
      ENFORCEMENT_DEFAULT: 'sometimes',
    });
    expect(await local.exited).toBe(1);
    expect(local.output()).toMatch(/AUTH_JWT_SECRET: must be at least 32 characters/);
    expect(local.output()).toMatch(/ENFORCEMENT_DEFAULT/);
  }, 30_000);
});
