import { QueueUnavailableError } from '../../billing/queue.js';

/**
 * Runs one queue operation under a deadline of `timeoutMs`, the SDK's own retries included (both queue
 * SDKs wait between tries on the signal they are given), and turns any failure into the port's
 * `QueueUnavailableError` with the SDK's error as its `cause`. A cut-off is recognised by our signal
 * having fired, never by the SDK's error text.
 */
export async function withDeadline<T>(
  queue: string,
  what: string,
  timeoutMs: number,
  call: (options: { abortSignal: AbortSignal }) => Promise<T>,
): Promise<T> {
  const abortSignal = AbortSignal.timeout(timeoutMs);
  try {
    return await call({ abortSignal });
  } catch (error) {
    const why = abortSignal.aborted
      ? `no answer within ${timeoutMs} ms (the SDK's retries included)`
      : error instanceof Error
        ? error.message
        : String(error);
    throw new QueueUnavailableError(`${what} on queue ${queue} failed: ${why}`, queue, { cause: error });
  }
}
