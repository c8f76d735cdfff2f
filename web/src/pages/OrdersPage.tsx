import type { Order } from '../api/types';
import { Alert, Loading, PageHeading, StatusBadge } from '../components/ui';
import { useApi, useLive } from '../context';
import { useNow, useResource, useTitle } from '../hooks';
import { formatPrice } from '../lib/money';
import { formatCountdown, msUntil } from '../lib/time';
import { Link } from '../router';

/** Applies a live order change to the list of the user's orders (newer views win). */
export function applyOrderChange(list: Order[] | undefined, order: Order): Order[] | undefined {
  if (!list) return list;
  const index = list.findIndex((o) => o.id === order.id);
  if (index < 0) return [...list, order];
  if (list[index].version > order.version) return list;
  return list.map((o) => (o.id === order.id ? order : o));
}

export function OrdersPage() {
  const api = useApi();
  const orders = useResource((signal) => api.listOrders(signal), [api]);
  useTitle('My orders');
  useLive((event) => {
    if (event.type === 'resync') orders.reload(true);
    if (event.type === 'order') orders.update((list) => applyOrderChange(list, event.order));
  });

  const list = orders.data ? [...orders.data].sort((a, b) => Date.parse(b.expiresAt) - Date.parse(a.expiresAt)) : [];
  const anyOpen = list.some((o) => o.status === 'created');
  const now = useNow(anyOpen);

  return (
    <section>
      <PageHeading lead="Tickets you reserved or bought.">My orders</PageHeading>
      {orders.loading && !orders.data ? <Loading label="Loading your orders…" /> : null}
      {orders.error ? (
        <Alert title="Could not load your orders">
          <p>{orders.error.message}</p>
        </Alert>
      ) : null}
      {orders.data && list.length === 0 ? (
        <div className="empty">
          <p>You have no orders yet.</p>
          <Link to="/">Find a ticket</Link>
        </div>
      ) : null}
      {list.length > 0 ? (
        <ul className="order-list" data-testid="order-list">
          {list.map((o) => (
            <li key={o.id} className="order-row" data-order-id={o.id}>
              <Link to={`/orders/${encodeURIComponent(o.id)}`} className="order-link">
                <span className="order-title">{o.ticket.title}</span>
                <span className="order-price">{formatPrice(o.ticket.price, o.ticket.currency)}</span>
              </Link>
              <span className="order-meta">
                <StatusBadge status={o.status} />
                {o.status === 'created' ? (
                  <span className="muted small">
                    <span className="visually-hidden">Time left to pay: </span>
                    {formatCountdown(msUntil(o.expiresAt, now))}
                  </span>
                ) : null}
              </span>
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
