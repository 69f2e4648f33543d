import net from 'node:net';

export interface FreezableProxy {
  readonly port: number;
  /**
   * From now on nothing is answered: connections are accepted (new ones too) and kept open, but no byte
   * goes either way. What a hung storage service looks like to a client, as opposed to one that refuses.
   */
  freeze(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `127.0.0.1:<target>` that can be frozen. Without a target it is frozen from the start:
 * a server that accepts and never answers.
 */
export async function startFreezableProxy(target?: number): Promise<FreezableProxy> {
  let frozen = target === undefined;
  const sockets = new Set<net.Socket>();
  const pairs = new Set<readonly [net.Socket, net.Socket]>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    track(client);
    if (frozen || target === undefined) return; // accepted, never answered
    const upstream = net.connect({ port: target, host: '127.0.0.1' });
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const pair = [client, upstream] as const;
    pairs.add(pair);
    client.once('close', () => {
      pairs.delete(pair);
      upstream.destroy();
    });
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  return {
    port: address.port,
    freeze() {
      frozen = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        // Read and drop: the client's writes succeed, nothing comes back.
        client.on('data', () => undefined);
        upstream.on('data', () => undefined);
      }
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
