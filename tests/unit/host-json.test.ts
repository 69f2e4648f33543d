import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HOST_QUEUE_SETTINGS } from '../../src/local/queue-worker.js';

/** The local queue worker imitates the Functions host's queue trigger as host.json configures it. */
describe('host.json and the local queue worker', () => {
  it('receive and fetch more as the queue trigger is configured', () => {
    const host = z
      .object({
        extensions: z.object({
          queues: z.object({
            batchSize: z.number(),
            newBatchThreshold: z.number(),
            maxDequeueCount: z.number(),
          }),
        }),
      })
      .parse(JSON.parse(readFileSync(new URL('../../host.json', import.meta.url), 'utf8')));
    expect(host.extensions.queues).toMatchObject(HOST_QUEUE_SETTINGS);
  });
});
