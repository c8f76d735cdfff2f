// @vitest-environment node
import { describe, expect, it, vi } from 'vitest';
import { ApiClient } from './client';
import { ApiError } from './errors';
import { TokenStore } from './tokens';

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

function setup(...responses: Response[]) {
  const fetch = vi.fn<typeof globalThis.fetch>();
  for (const response of responses) fetch.mockResolvedValueOnce(response);
  let n = 0;
  const client = new ApiClient({ fetch, tokens: new TokenStore(null), newKey: () => `key-${++n}` });
  const request = (i: number) => {
    const [url, init] = fetch.mock.calls[i];
    return { url, init: init!, headers: new Headers(init!.headers) };
  };
  return { client, fetch, request };
}

describe('ApiClient', () => {
  it('sends no consistency token before any write, and same-origin credentials', async () => {
    const { client, request } = setup(answer(200, []));
    await expect(client.listTickets()).resolves.toEqual([]);
    const { url, init, headers } = request(0);
    expect(url).toBe('/api/tickets');
    expect(init.method).toBe('GET');
    expect(init.credentials).toBe('same-origin');
    expect(headers.has('X-Consistency-Token')).toBe(false);
    expect(headers.has('Idempotency-Key')).toBe(false);
  });

  it('sends an Idempotency-Key and JSON on commands, and the merged tokens on later reads', async () => {
    const { client, request } = setup(
      answer(201, { id: 't1' }, { 'X-Consistency-Token': 'tickets:2:40' }),
      answer(201, { id: 'o1' }, { 'X-Consistency-Token': 'orders:1:77,tickets:2:41' }),
      answer(200, { id: 'o1' }),
      answer(200, { id: 't1' }, { 'X-Consistency-Token': 'tickets:2:99' }),
    );
    await client.createTicket({ title: 'Concert', price: 20.5, currency: 'EUR' });
    const first = request(0);
    expect(first.init.method).toBe('POST');
    expect(first.headers.get('Idempotency-Key')).toBe('key-1');
    expect(first.headers.get('Content-Type')).toBe('application/json');
    expect(JSON.parse(first.init.body as string)).toEqual({ title: 'Concert', price: 20.5, currency: 'EUR' });

    await client.createOrder('t1', { idempotencyKey: 'mine' });
    expect(request(1).headers.get('Idempotency-Key')).toBe('mine');
    expect(JSON.parse(request(1).init.body as string)).toEqual({ ticketId: 't1' });

    await client.getOrder('o1');
    expect(request(2).url).toBe('/api/orders/o1');
    expect(request(2).headers.get('X-Consistency-Token')).toBe('orders:1:77,tickets:2:41');

    // Even a GET answer's token (none is expected) would only ever move offsets forward.
    await client.getTicket('t1');
    expect(client.tokens.current).toBe('orders:1:77,tickets:2:99');
  });

  it('turns an error answer into an ApiError with the API entries', async () => {
    const { client } = setup(
      answer(400, { errors: [{ message: 'Email must be valid', field: 'email' }, { message: 'Password must be between 4 and 20 characters', field: 'password' }] }),
    );
    const error = await client.signUp('nope', 'x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(400);
    expect((error as ApiError).errors).toEqual([
      { message: 'Email must be valid', field: 'email' },
      { message: 'Password must be between 4 and 20 characters', field: 'password' },
    ]);
  });

  it('says something useful for answers without the error shape and for network failures', async () => {
    const { client, fetch } = setup(new Response('<html>bad gateway</html>', { status: 502, headers: { 'Retry-After': '3' } }));
    const error = (await client.listOrders().catch((e: unknown) => e)) as ApiError;
    expect(error.status).toBe(502);
    expect(error.retryAfter).toBe(3);
    expect(error.errors[0].message).toMatch(/unavailable/);

    fetch.mockRejectedValueOnce(new TypeError('Failed to fetch'));
    const offline = (await client.pay('o1', 'tok_visa').catch((e: unknown) => e)) as ApiError;
    expect(offline.status).toBe(0);
    expect(offline.retryable).toBe(true);
  });

  it('sends DELETE without a body and encodes ids in paths', async () => {
    const { client, request } = setup(new Response(null, { status: 204 }));
    await client.cancelOrder('a/b');
    expect(request(0).url).toBe('/api/orders/a%2Fb');
    expect(request(0).init.method).toBe('DELETE');
    expect(request(0).init.body).toBeUndefined();
    expect(request(0).headers.get('Idempotency-Key')).toBe('key-1');
  });
});
