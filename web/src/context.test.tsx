import { act, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiClient } from './api/client';
import { TokenStore } from './api/tokens';
import { ApiProvider, LiveProvider, loadConfig, SessionProvider, useLive, useLiveStatus, type LiveEvent } from './context';
import { alice, FakeEventSource, fakeFetch, json } from './test/helpers';

function Probe({ events }: { events: LiveEvent[] }) {
  useLive((event) => events.push(event));
  return <p data-testid="status">{useLiveStatus()}</p>;
}

function renderLive(fetch: typeof globalThis.fetch, events: LiveEvent[], user = alice) {
  FakeEventSource.instances = [];
  const client = new ApiClient({ fetch, tokens: new TokenStore(null) });
  return render(
    <ApiProvider client={client}>
      <SessionProvider initialUser={user}>
        <LiveProvider eventSource={(url) => new FakeEventSource(url) as unknown as EventSource}>
          <Probe events={events} />
        </LiveProvider>
      </SessionProvider>
    </ApiProvider>,
  );
}

afterEach(() => vi.useRealTimers());

describe('live updates', () => {
  it('passes tickets and orders on, and asks pages to read again on the first ready and on reset', () => {
    const events: LiveEvent[] = [];
    renderLive(fakeFetch(() => undefined), events);
    const stream = FakeEventSource.latest();
    expect(stream.url).toBe('/api/live');
    expect(screen.getByTestId('status').textContent).toBe('connecting');
    act(() => stream.emit('ready', {}, 'tickets:0:-1'));
    expect(screen.getByTestId('status').textContent).toBe('open');
    // A reconnect of the same EventSource resumes (Last-Event-ID): no re-read.
    act(() => stream.emit('ready', {}, 'tickets:0:-1'));
    act(() => stream.emit('ticket', { id: 't1', title: 'x', price: 1, userId: 'u', version: 0 }));
    act(() => stream.emit('order', { id: 'o1', status: 'complete', version: 2 }));
    act(() => stream.emit('ticket', 'not json'));
    act(() => stream.emit('reset', {}));
    expect(events.map((e) => e.type)).toEqual(['resync', 'ticket', 'order', 'resync']);
  });

  it('opens a new stream after the server refused one, and checks the session', async () => {
    vi.useFakeTimers();
    const events: LiveEvent[] = [];
    const fetch = fakeFetch((url) => (url === '/api/users/currentuser' ? json(200, { currentUser: alice }) : undefined));
    renderLive(fetch, events);
    const first = FakeEventSource.latest();
    act(() => {
      first.readyState = 2;
      first.onerror?.(new Event('error'));
    });
    expect(screen.getByTestId('status').textContent).toBe('retrying');
    expect(fetch).toHaveBeenCalledWith('/api/users/currentuser', expect.anything());
    await act(async () => {
      await vi.advanceTimersByTimeAsync(5_000);
    });
    expect(FakeEventSource.instances).toHaveLength(2);
    act(() => FakeEventSource.latest().emit('ready', {}));
    expect(events.map((e) => e.type)).toEqual(['resync']);
  });

  it('closes the stream on sign-out and opens none when signed out', () => {
    const events: LiveEvent[] = [];
    const view = renderLive(fakeFetch(() => undefined), events);
    const stream = FakeEventSource.latest();
    view.unmount();
    expect(stream.closed).toBe(true);
    renderLive(fakeFetch(() => undefined), events, null as never);
    expect(FakeEventSource.instances).toHaveLength(0);
  });
});

describe('runtime config', () => {
  const answer = (response: Response | Error) => vi.fn(async () => (response instanceof Error ? Promise.reject(response) : response));

  it('reads a Stripe publishable key from /config.json', async () => {
    const fetch = answer(json(200, { stripePublishableKey: 'pk_test_123abc' }));
    await expect(loadConfig(fetch)).resolves.toEqual({ stripePublishableKey: 'pk_test_123abc' });
    expect(fetch).toHaveBeenCalledWith('/config.json', expect.anything());
  });

  it('means the sandbox test cards when absent, empty, not JSON or not a publishable key', async () => {
    await expect(loadConfig(answer(new Response('nope', { status: 404 })))).resolves.toEqual({});
    await expect(loadConfig(answer(new Response('<!doctype html>', { status: 200, headers: { 'Content-Type': 'text/html' } })))).resolves.toEqual({});
    await expect(loadConfig(answer(json(200, { stripePublishableKey: null })))).resolves.toEqual({});
    await expect(loadConfig(answer(json(200, { stripePublishableKey: 'sk_live_secret' })))).resolves.toEqual({});
    await expect(loadConfig(answer(new TypeError('offline')))).resolves.toEqual({});
  });
});
