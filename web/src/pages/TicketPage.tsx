import { ApiError } from '../api/errors';
import type { Ticket } from '../api/types';
import { Alert, Form, Loading, PageHeading, SubmitButton } from '../components/ui';
import { useApi, useLive, useSession } from '../context';
import { useCommand, useResource, useTitle } from '../hooks';
import { formatPrice } from '../lib/money';
import { Link, useRouter } from '../router';
import { NotFoundPage } from './NotFoundPage';

const NO_FIELDS: readonly string[] = [];

export function TicketPage({ id }: { id: string }) {
  const api = useApi();
  const { user } = useSession();
  const { navigate } = useRouter();
  const ticket = useResource((signal) => api.getTicket(id, signal), [api, id]);
  const buy = useCommand(NO_FIELDS);
  useTitle(ticket.data?.title ?? 'Ticket');

  useLive((event) => {
    if (event.type === 'resync') ticket.reload(true);
    if (event.type === 'ticket' && event.ticket.id === id) {
      ticket.update((known) => (known && known.version > event.ticket.version ? known : event.ticket));
    }
  });

  if (ticket.error instanceof ApiError && ticket.error.status === 404) return <NotFoundPage what="ticket" />;

  const t: Ticket | undefined = ticket.data;
  const mine = !!(user && t && t.userId === user.id);
  const reserved = !!t?.orderId;

  const purchase = async () => {
    if (!t) return;
    const order = await buy.run({ ticketId: t.id }, (key) => api.createOrder(t.id, { idempotencyKey: key }));
    if (order) navigate(`/orders/${encodeURIComponent(order.id)}`);
  };

  return (
    <section className="narrow">
      <p className="breadcrumb">
        <Link to="/">← All tickets</Link>
      </p>
      <PageHeading>{t ? t.title : 'Ticket'}</PageHeading>
      {ticket.loading && !t ? <Loading label="Loading the ticket…" /> : null}
      {ticket.error && !(ticket.error instanceof ApiError && ticket.error.status === 404) ? (
        <Alert title="Could not load the ticket">
          <p>{ticket.error.message}</p>
        </Alert>
      ) : null}
      {t ? (
        <div className="card ticket-detail">
          <dl className="facts">
            <div>
              <dt>Price</dt>
              <dd className="price-large" data-testid="ticket-price">
                {formatPrice(t.price, t.currency)}
              </dd>
            </div>
            <div>
              <dt>Status</dt>
              <dd data-testid="ticket-status">
                {reserved ? <span className="badge badge-warning">Reserved</span> : <span className="badge badge-success">Available</span>}
              </dd>
            </div>
            {mine ? (
              <div>
                <dt>Seller</dt>
                <dd>You</dd>
              </div>
            ) : null}
          </dl>

          {mine ? (
            reserved ? (
              <p className="muted">Someone has reserved this ticket; it cannot be edited while reserved.</p>
            ) : (
              <Link className="button" to={`/tickets/${encodeURIComponent(t.id)}/edit`}>
                Edit ticket
              </Link>
            )
          ) : user === null ? (
            <p>
              <Link className="button button-primary" to={`/signin?next=${encodeURIComponent(`/tickets/${t.id}`)}`}>
                Sign in to buy
              </Link>
            </p>
          ) : user ? (
            reserved ? (
              <p className="muted">This ticket is reserved by someone else. It comes back if their order is not paid in time.</p>
            ) : (
              <Form fields={NO_FIELDS} errors={buy.errors} pending={buy.pending} onSubmit={purchase} label="Buy this ticket">
                <p className="muted">Buying reserves the ticket for you while you pay.</p>
                <SubmitButton pendingLabel="Reserving…">Buy for {formatPrice(t.price, t.currency)}</SubmitButton>
              </Form>
            )
          ) : null}
        </div>
      ) : null}
    </section>
  );
}
