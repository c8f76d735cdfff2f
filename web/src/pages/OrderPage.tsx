import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from '../api/errors';
import type { Order } from '../api/types';
import { Countdown } from '../components/Countdown';
import { PaymentForm } from '../components/Payment';
import { Alert, Form, Loading, PageHeading, StatusBadge, SubmitButton, useAnnounce } from '../components/ui';
import { useApi, useLive, useLiveStatus } from '../context';
import { useCommand, useResource, useTitle } from '../hooks';
import { formatPrice } from '../lib/money';
import { Link } from '../router';
import { NotFoundPage } from './NotFoundPage';

const NO_FIELDS: readonly string[] = [];

/** Keeps the newer of two views of an order. */
export function newerOrder(known: Order | undefined, incoming: Order): Order {
  return known && known.version > incoming.version ? known : incoming;
}

const STATUS_NEWS: Partial<Record<Order['status'], string>> = {
  complete: 'Payment received. Your order is complete and the ticket is yours.',
  cancelled: 'This order is cancelled; the ticket was released.',
};

export function OrderPage({ id }: { id: string }) {
  const api = useApi();
  const announce = useAnnounce();
  const live = useLiveStatus();
  const order = useResource((signal) => api.getOrder(id, signal), [api, id]);
  const cancel = useCommand(NO_FIELDS);
  const [paidJustNow, setPaidJustNow] = useState(false);
  useTitle(order.data ? `Order: ${order.data.ticket.title}` : 'Order');

  useLive((event) => {
    if (event.type === 'resync') order.reload(true);
    if (event.type === 'order' && event.order.id === id) order.update((known) => newerOrder(known, event.order));
  });

  // Say it when the status changes while the page is open (not for the status it opened with).
  const status = order.data?.status;
  const shown = useRef<Order['status'] | undefined>(undefined);
  useEffect(() => {
    if (!status) return;
    if (shown.current && shown.current !== status && STATUS_NEWS[status]) announce(STATUS_NEWS[status]!);
    shown.current = status;
  }, [status, announce]);

  // Past the deadline the expiration worker cancels the order, and the live stream says so.
  // Only while there is no open stream (refused, reconnecting) does the page look again itself.
  const [expired, setExpired] = useState(false);
  const onExpire = useCallback(() => setExpired(true), []);
  const reload = order.reload;
  useEffect(() => {
    if (!expired || live === 'open' || (status !== 'created' && status !== 'awaiting:payment')) return;
    const timer = setInterval(() => reload(true), 3000);
    return () => clearInterval(timer);
  }, [expired, live, status, reload]);

  if (order.error instanceof ApiError && (order.error.status === 404 || order.error.status === 401)) return <NotFoundPage what="order" />;

  const o = order.data;
  const open = o && (o.status === 'created' || o.status === 'awaiting:payment');

  const cancelOrder = async () => {
    const done = await cancel.run({ cancel: id }, (key) => api.cancelOrder(id, { idempotencyKey: key }));
    if (done !== undefined) order.reload(true);
  };

  return (
    <section className="narrow">
      <p className="breadcrumb">
        <Link to="/orders">← My orders</Link>
      </p>
      <PageHeading>{o ? o.ticket.title : 'Order'}</PageHeading>
      {order.loading && !o ? <Loading label="Loading the order…" /> : null}
      {order.error && !o ? (
        <Alert title="Could not load the order">
          <p>{order.error.message}</p>
        </Alert>
      ) : null}
      {o ? (
        <>
          <div className="card">
            <dl className="facts">
              <div>
                <dt>Status</dt>
                <dd data-testid="order-status" data-status={o.status}>
                  <StatusBadge status={o.status} />
                </dd>
              </div>
              <div>
                <dt>Price</dt>
                <dd className="price-large">{formatPrice(o.ticket.price, o.ticket.currency)}</dd>
              </div>
              <div>
                <dt>Ticket</dt>
                <dd>
                  <Link to={`/tickets/${encodeURIComponent(o.ticket.id)}`}>{o.ticket.title}</Link>
                </dd>
              </div>
            </dl>
            {open ? <Countdown key={o.expiresAt} expiresAt={o.expiresAt} onExpire={onExpire} /> : null}
            {o.status === 'complete' ? (
              <Alert tone="success">
                <p>{paidJustNow ? 'Payment received. ' : ''}The ticket is yours. Enjoy the show!</p>
              </Alert>
            ) : null}
            {o.status === 'cancelled' ? (
              <Alert tone="info">
                <p>
                  {Date.parse(o.expiresAt) <= Date.now() + 1000
                    ? 'The time to pay ran out, so this order was cancelled and the ticket went back on sale.'
                    : 'This order was cancelled and the ticket went back on sale.'}
                </p>
                <p>
                  <Link to={`/tickets/${encodeURIComponent(o.ticket.id)}`}>See the ticket</Link>
                </p>
              </Alert>
            ) : null}
          </div>
          {open ? (
            // Kept mounted while a payment is on its way (the order is `awaiting:payment` then,
            // and back to `created` if the card is declined), so its answer is shown here.
            <div className="card">
              <h2>Pay</h2>
              <PaymentForm
                order={o}
                onPaid={() => {
                  setPaidJustNow(true);
                  order.reload(true);
                }}
              />
            </div>
          ) : null}
          {o.status === 'awaiting:payment' ? (
            <p className="muted">
              <span className="spinner" aria-hidden="true" /> A payment is being processed…
            </p>
          ) : null}
          {o.status === 'created' ? (
            <Form fields={NO_FIELDS} errors={cancel.errors} pending={cancel.pending} onSubmit={cancelOrder} label="Cancel order" className="form form-inline">
              <SubmitButton className="button button-quiet" pendingLabel="Cancelling…">
                Cancel order and release the ticket
              </SubmitButton>
            </Form>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
