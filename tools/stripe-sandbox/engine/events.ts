import { ids, type WireEvent } from '../wire.js';
import type { Pending } from './changes.js';
import { type EngineState, found, type RequestContext } from './state.js';

export type Events = ReturnType<typeof createEvents>;

/** The event log: every change is published here, with the request that caused it. */
export function createEvents(state: EngineState) {
  const { options, events, eventsById } = state;

  function publish(ctx: RequestContext, pending: readonly Pending[]): void {
    for (const item of pending) {
      const event: WireEvent = {
        id: ids.event(),
        object: 'event',
        api_version: options.apiVersion,
        created: state.now,
        data: {
          object: item.object,
          ...(item.previous !== undefined ? { previous_attributes: item.previous } : {}),
        },
        livemode: false,
        pending_webhooks: options.willDeliver() ? 1 : 0,
        request: { id: ctx.requestId, idempotency_key: ctx.idempotencyKey },
        type: item.type,
      };
      events.push(event);
      eventsById.set(event.id, event);
      options.publish(event);
    }
  }

  return {
    publish,
    all: (): WireEvent[] => events,
    event: (id: string): WireEvent => found(eventsById, 'event', id),
    markDelivered(eventId: string): void {
      const event = eventsById.get(eventId);
      if (event) event.pending_webhooks = 0;
    },
  };
}
