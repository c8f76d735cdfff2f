import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { fakeFetch, json, renderApp } from '../test/helpers';
import { SellPage, ticketBody } from './TicketFormPage';

describe('sell form', () => {
  it('shows each field error of the API next to its field', async () => {
    const fetch = fakeFetch((url, init) => {
      if (url === '/api/tickets' && init.method === 'POST') {
        return json(400, {
          errors: [
            { message: 'Title is required', field: 'title' },
            { message: 'Price must be greater than 0', field: 'price' },
          ],
        });
      }
    });
    renderApp(<SellPage />, { fetch, path: '/tickets/new' });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('Price'), '-5');
    await user.click(screen.getByRole('button', { name: 'List ticket' }));
    await screen.findByTestId('error-title');
    expect(screen.getByTestId('error-title').textContent).toContain('Title is required');
    expect(screen.getByTestId('error-price').textContent).toContain('Price must be greater than 0');
    expect(document.activeElement).toBe(screen.getByLabelText('Title'));
    expect(JSON.parse(fetch.mock.calls[0][1]!.body as string)).toEqual({ title: '', price: -5, currency: 'USD' });
  });

  it('keeps the Idempotency-Key for a retry of the same ticket after a 503, and makes a new one after a change', async () => {
    let calls = 0;
    const fetch = fakeFetch((url) => {
      if (url !== '/api/tickets') return undefined;
      calls += 1;
      return calls < 3 ? json(503, { errors: [{ message: 'Service unavailable' }] }, { 'Retry-After': '1' }) : json(400, { errors: [{ message: 'Title is required', field: 'title' }] });
    });
    renderApp(<SellPage />, { fetch, path: '/tickets/new' });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('Title'), 'Concert');
    await user.type(screen.getByLabelText('Price'), '20');
    const submit = screen.getByRole('button', { name: 'List ticket' });
    await user.click(submit);
    await screen.findByTestId('form-errors');
    await user.click(submit);
    await waitFor(() => expect(fetch).toHaveBeenCalledTimes(2));
    await user.type(screen.getByLabelText('Price'), '5');
    await waitFor(() => expect(screen.getByRole('button', { name: 'List ticket' }).getAttribute('aria-disabled')).toBeNull());
    await user.click(screen.getByRole('button', { name: 'List ticket' }));
    await waitFor(() => expect(fetch).toHaveBeenCalledTimes(3));
    const keys = fetch.mock.calls.map(([, init]) => new Headers(init!.headers).get('Idempotency-Key'));
    expect(keys[0]).toBe(keys[1]);
    expect(keys[2]).not.toBe(keys[1]);
  });

  it('sends prices as numbers, and anything else as typed for the API to judge', () => {
    expect(ticketBody({ title: 'a', price: ' 12.50 ', currency: 'EUR' })).toEqual({ title: 'a', price: 12.5, currency: 'EUR' });
    expect(ticketBody({ title: 'a', price: '12,50', currency: 'USD' }).price).toBe('12,50');
    expect(ticketBody({ title: 'a', price: '', currency: 'USD' }).price).toBe('');
  });
});
