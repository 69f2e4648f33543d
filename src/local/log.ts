import type { LogHandler } from '@azure/functions';

/**
 * Tags each line a function logs with its invocation id, as the Functions host does for every
 * `context.log` it records, so local logs of concurrent invocations can be told apart.
 */
export function withInvocationId(log: LogHandler, invocationId: string): LogHandler {
  return (level, ...args) => log(level, `[${invocationId}]`, ...args);
}
