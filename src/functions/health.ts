import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const TIMEOUT_MS = 2_000;

async function probe(check: () => Promise<void>) {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
    return { status: 'ok' as const, latencyMs: Math.round(performance.now() - started) };
  } catch (error) {
    return { status: 'down' as const, error: error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
  }
}

/** Liveness of what every request depends on: Table Storage and the event queue. 503 when either is down. */
export const health = defineRoute({
  name: 'health',
  methods: ['GET'],
  route: 'health',
  access: 'anonymous',
  async handle({ services }) {
    const [storage, queue] = await Promise.all([
      probe(async () => {
        await Promise.all([services.tables.billing.ping(), services.tables.directory.ping()]);
      }),
      probe(() => services.queue.ping()),
    ]);
    const ok = storage.status === 'ok' && queue.status === 'ok';
    return json(ok ? 200 : 503, { status: ok ? 'ok' : 'degraded', checks: { storage, queue } });
  },
});

registerHttp(health);
