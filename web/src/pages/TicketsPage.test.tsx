import { act, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { Ticket } from '../api/types';
import { FakeEventSource, fakeFetch, json, renderApp } from '../test/helpers';
import { applyTicketChange, TicketsPage } from './TicketsPage';

const ticket = (id: string, extra: Partial<Ticket> = {}): Ticket => ({ id, title: `Show ${id}`, price: 20.5, currency: 'USD', userId: 'u-seller', version: 0, ...extra });

describe('tickets list', () => {
  it('applies live changes: reserved ones leave, new ones come, older views are ignored', () => {
    const list = [ticket('a'), ticket('b', { version: 2 })];
    expect(applyTicketChange(list, ticket('a', { version: 1, orderId: 'o1' }))?.map((t) => t.id)).toEqual(['b']);
    expect(applyTicketChange(list, ticket('c'))?.map((t) => t.id)).toEqual(['a', 'b', 'c']);
    expect(applyTicketChange(list, ticket('b', { version: 1, title: 'old' }))).toBe(list);
    expect(applyTicketChange(list, ticket('b', { version: 3, title: 'new' }))?.[1].title).toBe('new');
    expect(applyTicketChange(undefined, ticket('a'))).toBeUndefined();
  });

  it('drops a reserved ticket and shows a newly listed one without reloading', async () => {
    const fetch = fakeFetch((url) => (url === '/api/tickets' ? json(200, [ticket('a'), ticket('b')]) : undefined));
    renderApp(<TicketsPage />, { fetch, path: '/' });
    const list = await screen.findByTestId('ticket-list');
    expect(within(list).getAllByRole('listitem')).toHaveLength(2);
    expect(within(list).getByText('Show a')).toBeTruthy();
    expect(within(list).getAllByText('$20.50')).toHaveLength(2);

    const stream = FakeEventSource.latest();
    expect(stream.url).toBe('/api/live');
    act(() => stream.emit('ticket', ticket('a', { version: 1, orderId: 'o1' }), 'tickets:0:5'));
    await waitFor(() => expect(screen.queryByText('Show a')).toBeNull());
    act(() => stream.emit('ticket', ticket('c', { title: 'Fresh one' }), 'tickets:0:6'));
    expect(await screen.findByText('Fresh one')).toBeTruthy();
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('reads the list again on reset', async () => {
    let n = 0;
    const fetch = fakeFetch((url) => (url === '/api/tickets' ? json(200, ++n === 1 ? [ticket('a')] : [ticket('z', { title: 'After reset' })]) : undefined));
    renderApp(<TicketsPage />, { fetch, path: '/' });
    await screen.findByText('Show a');
    act(() => FakeEventSource.latest().emit('reset', {}));
    expect(await screen.findByText('After reset')).toBeTruthy();
    expect(screen.queryByText('Show a')).toBeNull();
  });

  it('opens no stream when signed out', async () => {
    const fetch = fakeFetch((url) => (url === '/api/tickets' ? json(200, []) : undefined));
    renderApp(<TicketsPage />, { fetch, user: null, path: '/' });
    expect(await screen.findByText('No tickets for sale right now.')).toBeTruthy();
    expect(FakeEventSource.instances).toHaveLength(0);
  });
});
