import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The source address of the request an event happens in. The HTTP layer runs each request inside
 * `withEventSource(request.ip, …)`; `Ledger.append` takes it for every event that does not name its own
 * source, so every module's events carry where the request came from (issue: ledger, point 2) without each
 * module passing it along. Events outside a request (scheduler, CLI) have none.
 */
const store = new AsyncLocalStorage<{ source: string }>();

export function withEventSource<T>(source: string, run: () => T): T {
  return store.run({ source }, run);
}

export function currentEventSource(): string | undefined {
  return store.getStore()?.source;
}
