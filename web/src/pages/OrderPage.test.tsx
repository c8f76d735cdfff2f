import { act, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Order } from '../api/types';
import { FakeEventSource, fakeFetch, json, renderApp } from '../test/helpers';
import { OrderPage } from './OrderPage';

const order = (extra: Partial<Order> = {}): Order => ({
  id: 'o1',
  userId: 'u-alice',
  status: 'created',
  expiresAt: new Date(Date.now() + 125_000).toISOString(),
  ticket: { id: 't1', title: 'Jazz night', price: 42, currency: 'EUR' },
  version: 0,
  ...extra,
});

afterEach(() => vi.useRealTimers());

describe('order page', () => {
  it('counts down to the deadline and switches to cancelled when the stream says so', async () => {
    const fetch = fakeFetch((url) => (url === '/api/orders/o1' ? json(200, order()) : undefined));
    renderApp(<OrderPage id="o1" />, { fetch, path: '/orders/o1' });
    expect(await screen.findByText('Awaiting payment')).toBeTruthy();
    const timer = screen.getByRole('timer');
    expect(timer.textContent).toMatch(/^2:0[45]$/);
    expect(timer.getAttribute('aria-label')).toMatch(/^2 minutes [45] seconds left to pay$/);

    act(() => FakeEventSource.latest().emit('order', order({ status: 'cancelled', version: 1 })));
    expect(await screen.findByText('Cancelled')).toBeTruthy();
    expect(screen.queryByRole('timer')).toBeNull();
    expect(screen.queryByRole('button', { name: /Pay/ })).toBeNull();
    await waitFor(() => expect(screen.getByTestId('announcer').textContent).toMatch(/cancelled/));
  });

  it('pays with a test token and shows the complete order', async () => {
    let paid = false;
    const fetch = fakeFetch((url, init) => {
      if (url === '/api/orders/o1') return json(200, paid ? order({ status: 'complete', version: 2 }) : order());
      if (url === '/api/payments' && init.method === 'POST') {
        const body = JSON.parse(init.body as string);
        if (body.token === 'tok_chargeDeclined') return json(400, { errors: [{ message: 'Your card was declined.' }] });
        paid = true;
        return json(201, { id: 'p1' }, { 'X-Consistency-Token': 'orders:1:9,tickets:0:4' });
      }
    });
    renderApp(<OrderPage id="o1" />, { fetch, path: '/orders/o1' });
    const user = userEvent.setup();
    await user.click(await screen.findByLabelText(/Test card that is declined/));
    await user.click(screen.getByRole('button', { name: 'Pay €42.00' }));
    expect((await screen.findByTestId('form-errors')).textContent).toBe('Your card was declined.');
    expect(screen.getByText('Awaiting payment')).toBeTruthy();

    await user.click(screen.getByLabelText(/Test Visa card/));
    await user.click(screen.getByRole('button', { name: 'Pay €42.00' }));
    expect(await screen.findByText('Complete')).toBeTruthy();
    // The read after the payment carried the payment's token.
    const last = fetch.mock.calls.at(-1)!;
    expect(last[0]).toBe('/api/orders/o1');
    expect(new Headers(last[1]!.headers).get('X-Consistency-Token')).toBe('orders:1:9,tickets:0:4');
    const payments = fetch.mock.calls.filter(([url]) => url === '/api/payments');
    const keys = payments.map(([, init]) => new Headers(init!.headers).get('Idempotency-Key'));
    expect(new Set(keys).size).toBe(2);
  });

  it('ignores a live view older than the one shown', async () => {
    const fetch = fakeFetch((url) => (url === '/api/orders/o1' ? json(200, order({ status: 'complete', version: 3 })) : undefined));
    renderApp(<OrderPage id="o1" />, { fetch, path: '/orders/o1' });
    expect(await screen.findByText('Complete')).toBeTruthy();
    act(() => FakeEventSource.latest().emit('order', order({ status: 'created', version: 0 })));
    expect(screen.getByText('Complete')).toBeTruthy();
  });

  it('keeps the payment form, and its answer, while the stream shows the payment in progress', async () => {
    let answer!: (response: Response) => void;
    const fetch = fakeFetch((url) => {
      if (url === '/api/orders/o1') return json(200, order());
      if (url === '/api/payments') return new Promise<Response>((resolve) => (answer = resolve));
    });
    renderApp(<OrderPage id="o1" />, { fetch, path: '/orders/o1' });
    const user = userEvent.setup();
    await user.click(await screen.findByLabelText(/Test card that is declined/));
    await user.click(screen.getByRole('button', { name: 'Pay €42.00' }));
    await waitFor(() => expect(answer).toBeTypeOf('function'));
    const stream = FakeEventSource.latest();
    act(() => stream.emit('order', order({ status: 'awaiting:payment', version: 1 })));
    expect(await screen.findByText('Payment in progress')).toBeTruthy();
    await act(async () => answer(json(400, { errors: [{ message: 'Your card was declined.' }] })));
    act(() => stream.emit('order', order({ status: 'created', version: 2 })));
    expect((await screen.findByTestId('form-errors')).textContent).toBe('Your card was declined.');
    expect((screen.getByLabelText(/Test card that is declined/) as HTMLInputElement).checked).toBe(true);
    expect(screen.getByText('Awaiting payment')).toBeTruthy();
  });
});
