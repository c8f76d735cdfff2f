import { useEffect, useState } from 'react';
import { ApiError } from '../api/errors';
import type { Ticket } from '../api/types';
import { Alert, Form, Loading, PageHeading, SelectField, SubmitButton, TextField, useAnnounce } from '../components/ui';
import { useApi, useSession } from '../context';
import { useCommand, useResource, useTitle } from '../hooks';
import { CURRENCIES, DEFAULT_CURRENCY, minorDigits } from '../lib/money';
import { Link, useRouter } from '../router';
import { NotFoundPage } from './NotFoundPage';

const FIELDS = ['title', 'price', 'currency'] as const;

interface Values {
  title: string;
  price: string;
  currency: string;
}

/** The ticket form: sell a ticket, or edit one of yours. */
export function TicketForm({
  initial,
  submitLabel,
  pendingLabel,
  onSubmit,
  command,
}: {
  initial: Values;
  submitLabel: string;
  pendingLabel: string;
  onSubmit: (values: Values) => void;
  command: ReturnType<typeof useCommand>;
}) {
  const [values, setValues] = useState<Values>(initial);
  const set = (name: keyof Values) => (e: { target: { value: string } }) => setValues((v) => ({ ...v, [name]: e.target.value }));
  return (
    <Form fields={FIELDS} errors={command.errors} pending={command.pending} onSubmit={() => onSubmit(values)} label={submitLabel}>
      <TextField name="title" label="Title" hint="What is it for? For example: “Radiohead, Berlin, 12 June, standing”." autoComplete="off" value={values.title} onChange={set('title')} maxLength={200} />
      <div className="field-row">
        <TextField name="price" label="Price" hint={priceHint(values.currency)} type="text" inputMode="decimal" autoComplete="off" value={values.price} onChange={set('price')} className="price-input" />
        <SelectField name="currency" label="Currency" value={values.currency} onChange={set('currency')}>
          {CURRENCIES.map((code) => (
            <option key={code} value={code}>
              {code}
            </option>
          ))}
        </SelectField>
      </div>
      <SubmitButton pendingLabel={pendingLabel}>{submitLabel}</SubmitButton>
    </Form>
  );
}

function priceHint(currency: string): string {
  const digits = minorDigits(currency);
  return digits === 0 ? `Whole ${currency}, no decimals.` : `In ${currency}, up to ${digits} decimals.`;
}

/**
 * What the form sends: the price as typed when it is not a plain number (the API's message then
 * says what is wrong with it), else as a number.
 */
export function ticketBody(values: Values): { title: string; price: number | string; currency: string } {
  const trimmed = values.price.trim();
  const price = /^-?\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
  return { title: values.title, price, currency: values.currency };
}

export function SellPage() {
  const api = useApi();
  const { navigate } = useRouter();
  const announce = useAnnounce();
  const command = useCommand(FIELDS);
  useTitle('Sell a ticket');

  const submit = async (values: Values) => {
    const body = ticketBody(values);
    const created = await command.run(body, (key) => api.createTicket(body, { idempotencyKey: key }));
    if (!created) return;
    announce(`“${created.title}” is listed for sale.`);
    navigate(`/tickets/${encodeURIComponent(created.id)}`);
  };

  return (
    <section className="narrow">
      <PageHeading lead="List a ticket; buyers see it at once.">Sell a ticket</PageHeading>
      <div className="card">
        <TicketForm initial={{ title: '', price: '', currency: DEFAULT_CURRENCY }} submitLabel="List ticket" pendingLabel="Listing…" onSubmit={submit} command={command} />
      </div>
    </section>
  );
}

export function EditTicketPage({ id }: { id: string }) {
  const api = useApi();
  const { user } = useSession();
  const { navigate } = useRouter();
  const announce = useAnnounce();
  const ticket = useResource((signal) => api.getTicket(id, signal), [api, id]);
  const command = useCommand(FIELDS);
  useTitle('Edit ticket');
  const [loaded, setLoaded] = useState<Ticket | undefined>();
  useEffect(() => {
    if (ticket.data && !loaded) setLoaded(ticket.data);
  }, [ticket.data, loaded]);

  if (ticket.error instanceof ApiError && ticket.error.status === 404) return <NotFoundPage what="ticket" />;

  const submit = async (values: Values) => {
    const body = ticketBody(values);
    const updated = await command.run(body, (key) => api.updateTicket(id, body, { idempotencyKey: key }));
    if (!updated) return;
    announce('Ticket saved.');
    navigate(`/tickets/${encodeURIComponent(id)}`);
  };

  const notMine = loaded && user && loaded.userId !== user.id;
  return (
    <section className="narrow">
      <p className="breadcrumb">
        <Link to={`/tickets/${encodeURIComponent(id)}`}>← Back to the ticket</Link>
      </p>
      <PageHeading>Edit ticket</PageHeading>
      {ticket.loading && !loaded ? <Loading label="Loading the ticket…" /> : null}
      {ticket.error && !loaded ? (
        <Alert title="Could not load the ticket">
          <p>{ticket.error.message}</p>
        </Alert>
      ) : null}
      {notMine ? (
        <Alert tone="info">
          <p>Only the seller can edit this ticket.</p>
        </Alert>
      ) : loaded ? (
        <div className="card">
          {loaded.orderId ? (
            <Alert tone="info">
              <p>This ticket is reserved; edits are refused until the order is cancelled or expires.</p>
            </Alert>
          ) : null}
          <TicketForm
            initial={{ title: loaded.title, price: String(loaded.price), currency: (loaded.currency ?? DEFAULT_CURRENCY).toUpperCase() }}
            submitLabel="Save changes"
            pendingLabel="Saving…"
            onSubmit={submit}
            command={command}
          />
        </div>
      ) : null}
    </section>
  );
}
