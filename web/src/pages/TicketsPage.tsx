import { useEffect, useRef } from 'react';
import type { Ticket } from '../api/types';
import { Alert, Loading, PageHeading, useAnnounce } from '../components/ui';
import { useApi, useLive, useSession } from '../context';
import { useResource, useTitle } from '../hooks';
import { formatPrice } from '../lib/money';
import { Link } from '../router';

/** Applies a live ticket change to the list of tickets for sale. */
export function applyTicketChange(list: Ticket[] | undefined, ticket: Ticket): Ticket[] | undefined {
  if (!list) return list;
  const index = list.findIndex((t) => t.id === ticket.id);
  const known = index >= 0 ? list[index] : undefined;
  if (known && known.version > ticket.version) return list; // an older view than the one shown
  if (ticket.orderId) {
    // Reserved or sold: no longer for sale.
    return index >= 0 ? list.filter((t) => t.id !== ticket.id) : list;
  }
  if (index >= 0) return list.map((t) => (t.id === ticket.id ? ticket : t));
  return [...list, ticket];
}

/** Gathers live changes over a short time into one calm announcement. */
function useBatchedAnnouncer(delayMs = 1500) {
  const announce = useAnnounce();
  const pending = useRef({ added: 0, removed: 0 });
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return (kind: 'added' | 'removed') => {
    pending.current[kind] += 1;
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      const { added, removed } = pending.current;
      pending.current = { added: 0, removed: 0 };
      const parts: string[] = [];
      if (added) parts.push(`${added} new ticket${added === 1 ? '' : 's'} listed`);
      if (removed) parts.push(`${removed} ticket${removed === 1 ? '' : 's'} no longer available`);
      if (parts.length) announce(`${parts.join(', ')}.`);
    }, delayMs);
  };
}

export function TicketsPage() {
  const api = useApi();
  const { user } = useSession();
  const tickets = useResource((signal) => api.listTickets(signal), [api]);
  const note = useBatchedAnnouncer();
  useTitle('Tickets for sale');

  useLive((event) => {
    if (event.type === 'resync') tickets.reload(true);
    if (event.type !== 'ticket') return;
    const before = tickets.data;
    const wasListed = before?.some((t) => t.id === event.ticket.id) ?? false;
    tickets.update((list) => applyTicketChange(list, event.ticket));
    if (before) {
      if (event.ticket.orderId && wasListed) note('removed');
      if (!event.ticket.orderId && !wasListed) note('added');
    }
  });

  // Newest first: the API answers the most recently listed tickets, oldest first.
  const list = tickets.data ? [...tickets.data].reverse() : [];
  return (
    <section>
      <div className="page-top">
        <PageHeading lead="Tickets people are selling right now. Reserved ones disappear as they go.">Tickets for sale</PageHeading>
        {user ? (
          <Link className="button button-primary" to="/tickets/new">
            Sell a ticket
          </Link>
        ) : null}
      </div>
      {tickets.loading && !tickets.data ? <Loading label="Loading tickets…" /> : null}
      {tickets.error ? (
        <Alert title="Could not load the tickets">
          <p>{tickets.error.message}</p>
          <button type="button" className="button" onClick={() => tickets.reload()}>
            Try again
          </button>
        </Alert>
      ) : null}
      {tickets.data && list.length === 0 ? (
        <div className="empty">
          <p>No tickets for sale right now.</p>
          {user ? <Link to="/tickets/new">Sell the first one</Link> : <Link to="/signup">Sign up to sell one</Link>}
        </div>
      ) : null}
      {list.length > 0 ? (
        <ul className="ticket-grid" aria-label="Tickets for sale" data-testid="ticket-list">
          {list.map((ticket) => (
            <li key={ticket.id} className="ticket-card" data-ticket-id={ticket.id}>
              <Link to={`/tickets/${encodeURIComponent(ticket.id)}`} className="ticket-link">
                <span className="ticket-title">{ticket.title}</span>
                <span className="ticket-price">{formatPrice(ticket.price, ticket.currency)}</span>
              </Link>
              {user && ticket.userId === user.id ? <span className="badge badge-info">Yours</span> : null}
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
