import { render } from '@testing-library/react';
import type { ReactNode } from 'react';
import { vi } from 'vitest';
import { ApiClient } from '../api/client';
import { TokenStore } from '../api/tokens';
import type { RuntimeConfig, SessionUser } from '../api/types';
import { AnnouncerProvider } from '../components/ui';
import { ApiProvider, ConfigProvider, LiveProvider, SessionProvider } from '../context';
import { RouterProvider } from '../router';

/** An EventSource the test drives. */
export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  onerror: ((event: Event) => void) | null = null;
  private listeners = new Map<string, Set<(event: MessageEvent) => void>>();
  closed = false;

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }

  addEventListener(type: string, listener: (event: MessageEvent) => void) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(listener);
  }

  removeEventListener(type: string, listener: (event: MessageEvent) => void) {
    this.listeners.get(type)?.delete(listener);
  }

  close() {
    this.closed = true;
    this.readyState = 2;
  }

  /** Delivers a server-sent event. */
  emit(type: string, data: unknown, id = '') {
    if (type === 'ready') this.readyState = 1;
    const event = new MessageEvent(type, { data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: id });
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  static latest(): FakeEventSource {
    const last = FakeEventSource.instances.at(-1);
    if (!last) throw new Error('no EventSource was opened');
    return last;
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

type Route = (url: string, init: RequestInit) => Response | Promise<Response> | undefined;

/** A fetch answering by route; an unexpected request fails the test. */
export function fakeFetch(route: Route) {
  return vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const answer = await route(url, init);
    if (!answer) throw new Error(`unexpected request ${init.method ?? 'GET'} ${url}`);
    return answer;
  });
}

export const alice: SessionUser = { id: 'u-alice', email: 'alice@example.com', iat: 1 };

export function renderApp(
  ui: ReactNode,
  { fetch, user = alice, path = '/', config = {} }: { fetch: typeof globalThis.fetch; user?: SessionUser | null; path?: string; config?: RuntimeConfig },
) {
  window.history.replaceState(null, '', path);
  FakeEventSource.instances = [];
  const client = new ApiClient({ fetch, tokens: new TokenStore(null) });
  const eventSource = (url: string) => new FakeEventSource(url) as unknown as EventSource;
  const result = render(
    <ApiProvider client={client}>
      <ConfigProvider config={config}>
        <RouterProvider>
          <AnnouncerProvider>
            <SessionProvider initialUser={user}>
              <LiveProvider eventSource={eventSource}>{ui}</LiveProvider>
            </SessionProvider>
          </AnnouncerProvider>
        </RouterProvider>
      </ConfigProvider>
    </ApiProvider>,
  );
  return { ...result, client };
}
