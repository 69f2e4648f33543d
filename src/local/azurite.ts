import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { removePidFile, stopStaleAzurite, writePidFile } from './azurite-pidfile.js';

/**
 * The account Azurite serves. Its key is drawn afresh for every start and handed to Azurite through
 * `AZURITE_ACCOUNTS`, so no storage key sits in the source (not even Azurite's published one) and a
 * connection string from one run opens nothing in another.
 */
const ACCOUNT = 'devstoreaccount1';
const newAccountKey = () => randomBytes(64).toString('base64');

export interface AzuriteOptions {
  /**
   * Data directory; omit to keep everything in memory (tests, benchmarks). With one, a pid file there
   * (`azurite.pid`) lets the next start stop an Azurite a killed host left running on the same data.
   */
  readonly location?: string;
  /** Fixed ports (the standard 10000-10002 for `npm start`); omit to take free ones. */
  readonly ports?: { readonly blob: number; readonly queue: number; readonly table: number };
  /** Forward Azurite's own output (for debugging). @default false */
  readonly verbose?: boolean;
  /**
   * The account key to serve; a new one is drawn when omitted. Pass a running Azurite's `accountKey` to
   * restart it under the same key, so clients holding its connection string go on working.
   */
  readonly accountKey?: string;
}

export interface RunningAzurite {
  readonly connectionString: string;
  /** The key it serves its account with (see `AzuriteOptions.accountKey`). */
  readonly accountKey: string;
  readonly ports: { readonly blob: number; readonly queue: number; readonly table: number };
  /** The Azurite process (`undefined` only if it could not be spawned at all). */
  readonly pid: number | undefined;
  /** Stops the process; resolves once it has exited. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function connectionStringFor(ports: RunningAzurite['ports'], accountKey = newAccountKey()): string {
  const endpoint = (port: number) => `http://127.0.0.1:${port}/${ACCOUNT}`;
  const parts = {
    DefaultEndpointsProtocol: 'http',
    AccountName: ACCOUNT,
    AccountKey: accountKey,
    BlobEndpoint: endpoint(ports.blob),
    QueueEndpoint: endpoint(ports.queue),
    TableEndpoint: endpoint(ports.table),
  };
  return Object.entries(parts)
    .map(([name, value]) => `${name}=${value}`)
    .join(';');
}

/**
 * Loaded into the Azurite process before Azurite itself (`--import`), so that it dies with its parent.
 * The parent holds the other end of an IPC channel; the operating system closes it when the parent
 * exits in any way, SIGKILL included, and Node then emits 'disconnect' here. SIGTERM lets Azurite close
 * its servers and save its data as on Ctrl-C; exit anyway should that hang. The channel is unref'd so
 * that it alone never keeps Azurite alive. A data: URL, because the guard must run the same from source
 * (tsx) and from `dist/`, and needs no file of its own.
 */
const PARENT_GUARD = [
  'process.channel?.unref();',
  "const stop = () => { process.kill(process.pid, 'SIGTERM'); setTimeout(() => process.exit(1), 5000).unref(); };",
  "if (process.connected) process.once('disconnect', stop); else stop();",
].join('\n');

/**
 * Starts Azurite (the `azurite` devDependency) as a child process and waits until its queue and table
 * services accept connections. The Functions host also needs blob, so all three run. Azurite exits when
 * this process does, however it ends (see `PARENT_GUARD`); with a `location`, an Azurite that a previous
 * start on the same data left running is stopped first (see `stopStaleAzurite`).
 */
export async function startAzurite(options: AzuriteOptions = {}): Promise<RunningAzurite> {
  const bin = createRequire(import.meta.url).resolve('azurite/dist/src/azurite.js');
  // Absolute, so that the pid file check can compare it with the survivor's command line.
  const location = options.location === undefined ? undefined : path.resolve(options.location);
  if (location !== undefined) {
    mkdirSync(location, { recursive: true });
    const stale = await stopStaleAzurite(location, bin);
    if (stale.kind === 'stopped') {
      console.log(`Stopped Azurite ${stale.pid}, left running on ${location} by an earlier start.`);
    }
  }
  const ports = options.ports ?? { blob: await freePort(), queue: await freePort(), table: await freePort() };
  for (const [service, port] of Object.entries(ports)) {
    if (await accepts(port)) {
      throw new Error(
        `Port ${port} (Azurite ${service}) is already in use; stop whatever holds it or choose other ports.`,
      );
    }
  }
  const args = [
    '--import',
    `data:text/javascript,${encodeURIComponent(PARENT_GUARD)}`,
    bin,
    '--silent',
    '--skipApiVersionCheck',
    '--disableProductStyleUrl',
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(ports.blob),
    '--queueHost',
    '127.0.0.1',
    '--queuePort',
    String(ports.queue),
    '--tableHost',
    '127.0.0.1',
    '--tablePort',
    String(ports.table),
  ];
  if (location !== undefined) {
    args.push('--location', location);
  } else {
    args.push('--inMemoryPersistence');
  }
  const accountKey = options.accountKey ?? newAccountKey();
  const child: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, AZURITE_ACCOUNTS: `${ACCOUNT}:${accountKey}` },
    // The fourth descriptor is the IPC channel whose closing tells Azurite that we are gone.
    stdio: options.verbose ? ['inherit', 'inherit', 'inherit', 'ipc'] : ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  // Held open for Azurite's sake only: it must not keep this process alive either.
  child.channel?.unref();
  const pid = child.pid;
  if (pid !== undefined && location !== undefined) writePidFile(location, pid);
  const forgetPid = () => {
    if (pid !== undefined && location !== undefined) removePidFile(location, pid);
  };
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const deadline = Date.now() + 30_000;
  while (!((await accepts(ports.queue)) && (await accepts(ports.table)))) {
    if (child.exitCode !== null) {
      forgetPid();
      throw new Error(`Azurite exited with code ${child.exitCode}: ${stderr}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      forgetPid();
      throw new Error(`Azurite did not start within 30 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  return {
    connectionString: connectionStringFor(ports, accountKey),
    accountKey,
    ports,
    pid,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      forgetPid();
    },
  };
}
