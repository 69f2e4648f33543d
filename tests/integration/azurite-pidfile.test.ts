import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, type RunningAzurite, startAzurite } from '../../src/local/azurite.js';
import { PID_FILE_NAME } from '../../src/local/azurite-pidfile.js';

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const freePorts = async () => ({ blob: await freePort(), queue: await freePort(), table: await freePort() });

// /proc is how a survivor is recognised as ours; elsewhere the pid file is never acted on.
describe.runIf(process.platform === 'linux')('the Azurite pid file', () => {
  const dirs: string[] = [];
  const running: RunningAzurite[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'billing-azurite-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    await Promise.all(running.map((azurite) => azurite.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('lets the next start on the same data stop an Azurite left running, then start on its ports', async () => {
    const location = dataDir();
    const ports = await freePorts();
    const survivor = await startAzurite({ location, ports });
    running.push(survivor);
    expect(readFileSync(path.join(location, PID_FILE_NAME), 'utf8').trim()).toBe(String(survivor.pid));

    // As if the host that started `survivor` were gone without stopping it: start again on the same data.
    const next = await startAzurite({ location, ports });
    running.push(next);
    expect(alive(survivor.pid)).toBe(false);
    expect(await accepts(ports.table)).toBe(true);
    expect(readFileSync(path.join(location, PID_FILE_NAME), 'utf8').trim()).toBe(String(next.pid));

    await next.stop();
    expect(() => readFileSync(path.join(location, PID_FILE_NAME))).toThrow();
  }, 60_000);

  it('never kills a stranger whose pid the file names, and never trusts a malformed file', async () => {
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const location = dataDir();
      writeFileSync(path.join(location, PID_FILE_NAME), `${stranger.pid}\n`);
      const azurite = await startAzurite({ location, ports: await freePorts() });
      running.push(azurite);
      expect(alive(stranger.pid)).toBe(true);
      expect(readFileSync(path.join(location, PID_FILE_NAME), 'utf8').trim()).toBe(String(azurite.pid));
      await azurite.stop();

      const other = dataDir();
      writeFileSync(path.join(other, PID_FILE_NAME), 'not a pid');
      const fresh = await startAzurite({ location: other, ports: await freePorts() });
      running.push(fresh);
      await fresh.stop();
    } finally {
      stranger.kill('SIGKILL');
    }
  }, 60_000);

  it('leaves the Azurite of another data directory alone', async () => {
    const first = await startAzurite({ location: dataDir(), ports: await freePorts() });
    running.push(first);
    const location = dataDir();
    // A pid file naming an Azurite of ours, but one running on other data.
    writeFileSync(path.join(location, PID_FILE_NAME), `${first.pid}\n`);
    const second = await startAzurite({ location, ports: await freePorts() });
    running.push(second);
    expect(alive(first.pid)).toBe(true);
    expect(await accepts(first.ports.table)).toBe(true);
  }, 60_000);
});
