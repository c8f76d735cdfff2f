import { useEffect, useMemo, useRef, useState } from 'react';
import type { Order } from '../api/types';
import { useApi, useConfig } from '../context';
import { useCommand } from '../hooks';
import { formatPrice } from '../lib/money';
import { Form, SubmitButton, useFormField } from './ui';

const FIELDS = ['token'] as const;
const NO_FIELDS: readonly string[] = [];

/** The sandbox gateway's test card tokens (Stripe's own test tokens). */
export const TEST_TOKENS = [
  { token: 'tok_visa', label: 'Test Visa card', hint: 'Payment goes through.' },
  { token: 'tok_chargeDeclined', label: 'Test card that is declined', hint: 'The bank refuses the charge.' },
] as const;

/** Pays `order`; `onPaid` runs after the API accepted the payment. */
export function PaymentForm({ order, onPaid }: { order: Order; onPaid: () => void }) {
  const { stripePublishableKey } = useConfig();
  return stripePublishableKey ? (
    <StripePaymentForm order={order} onPaid={onPaid} publishableKey={stripePublishableKey} />
  ) : (
    <SandboxPaymentForm order={order} onPaid={onPaid} />
  );
}

function SandboxPaymentForm({ order, onPaid }: { order: Order; onPaid: () => void }) {
  const api = useApi();
  const command = useCommand(FIELDS);
  const [token, setToken] = useState<string>(TEST_TOKENS[0].token);

  const pay = async () => {
    const paid = await command.run({ orderId: order.id, token }, (key) => api.pay(order.id, token, { idempotencyKey: key }));
    if (paid) onPaid();
  };

  return (
    <Form fields={FIELDS} errors={command.errors} pending={command.pending} onSubmit={pay} label="Payment">
      <TokenChoices token={token} setToken={setToken} />
      <SubmitButton pendingLabel="Paying…">Pay {formatPrice(order.ticket.price, order.ticket.currency)}</SubmitButton>
    </Form>
  );
}

function TokenChoices({ token, setToken }: { token: string; setToken: (token: string) => void }) {
  const { id, errors } = useFormField('token');
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  return (
    <fieldset className={`choices${errors.length ? ' field-invalid' : ''}`} aria-describedby={errors.length ? `${errorId} ${hintId}` : hintId}>
      <legend>Card</legend>
      <p className="hint" id={hintId}>
        Test mode: no real money moves. Pick a test card.
      </p>
      {errors.length ? (
        <p className="field-error" id={errorId} data-testid="error-token">
          {errors.join(' ')}
        </p>
      ) : null}
      {TEST_TOKENS.map((choice, index) => (
        <label key={choice.token} className="choice">
          <input
            type="radio"
            name="token"
            value={choice.token}
            id={index === 0 ? id : undefined}
            aria-invalid={errors.length > 0 || undefined}
            checked={token === choice.token}
            onChange={() => setToken(choice.token)}
          />
          <span>
            <span className="choice-label">{choice.label}</span>
            <span className="choice-hint">
              {choice.hint} <code>{choice.token}</code>
            </span>
          </span>
        </label>
      ))}
    </fieldset>
  );
}

// ---- Stripe (when /config.json names a publishable key) -------------------------------------

interface StripeCard {
  mount: (element: HTMLElement) => void;
  destroy: () => void;
  on: (event: 'change', handler: (e: { error?: { message: string } }) => void) => void;
}
interface StripeLike {
  elements: () => { create: (type: 'card', options?: unknown) => StripeCard };
  createToken: (card: StripeCard) => Promise<{ token?: { id: string }; error?: { message: string } }>;
}

let stripeLoading: Promise<StripeLike> | null = null;

/** Loads Stripe.js once, only when a key is configured. */
function loadStripe(publishableKey: string): Promise<StripeLike> {
  stripeLoading ??= new Promise<StripeLike>((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'https://js.stripe.com/v3/';
    script.async = true;
    script.onload = () => {
      const factory = (window as unknown as { Stripe?: (key: string) => StripeLike }).Stripe;
      if (factory) resolve(factory(publishableKey));
      else reject(new Error('Stripe.js did not load.'));
    };
    script.onerror = () => {
      stripeLoading = null;
      reject(new Error('Could not load the card form. Check your connection and reload the page.'));
    };
    document.head.appendChild(script);
  });
  return stripeLoading;
}

function StripePaymentForm({ order, onPaid, publishableKey }: { order: Order; onPaid: () => void; publishableKey: string }) {
  const api = useApi();
  const command = useCommand(FIELDS);
  const mountRef = useRef<HTMLDivElement>(null);
  const [stripe, setStripe] = useState<{ stripe: StripeLike; card: StripeCard } | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);

  useEffect(() => {
    let card: StripeCard | null = null;
    let cancelled = false;
    loadStripe(publishableKey)
      .then((s) => {
        if (cancelled || !mountRef.current) return;
        card = s.elements().create('card', { hidePostalCode: true });
        card.mount(mountRef.current);
        setStripe({ stripe: s, card });
      })
      .catch((error: Error) => setLoadError(error.message));
    return () => {
      cancelled = true;
      card?.destroy();
    };
  }, [publishableKey]);

  const pay = async () => {
    if (!stripe) return;
    const { token, error } = await stripe.stripe.createToken(stripe.card);
    if (!token) {
      command.setErrors({ fields: { token: [error?.message ?? 'Check the card details.'] }, form: [] });
      return;
    }
    const paid = await command.run({ orderId: order.id, token: token.id }, (key) => api.pay(order.id, token.id, { idempotencyKey: key }));
    if (paid) onPaid();
  };

  const errors = command.errors.fields.token ?? [];
  const formErrors = useMemo(() => ({ fields: {}, form: [...(loadError ? [loadError] : []), ...command.errors.form] }), [loadError, command.errors]);
  return (
    <Form fields={NO_FIELDS} errors={formErrors} pending={command.pending} onSubmit={pay} label="Payment">
      <div className={`field${errors.length ? ' field-invalid' : ''}`}>
        <span className="label" id="card-label">
          Card
        </span>
        {publishableKey.startsWith('pk_test_') ? (
          <p className="hint">Stripe test mode: use 4242 4242 4242 4242, any future date and any CVC.</p>
        ) : null}
        {errors.length ? (
          <p className="field-error" data-testid="error-token" role="alert">
            {errors.join(' ')}
          </p>
        ) : null}
        <div ref={mountRef} className="stripe-card" aria-labelledby="card-label" />
      </div>
      <SubmitButton pendingLabel="Paying…">Pay {formatPrice(order.ticket.price, order.ticket.currency)}</SubmitButton>
    </Form>
  );
}
