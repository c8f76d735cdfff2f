import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { Order } from '../api/types';
import { fakeFetch, renderApp } from '../test/helpers';
import { PaymentForm } from './Payment';

const order: Order = {
  id: 'o1',
  userId: 'u-alice',
  status: 'created',
  expiresAt: new Date(Date.now() + 60_000).toISOString(),
  ticket: { id: 't1', title: 'Show', price: 1500, currency: 'JPY' },
  version: 0,
};

describe('payment form', () => {
  it('offers the sandbox test cards without a Stripe key, and loads no Stripe.js', () => {
    renderApp(<PaymentForm order={order} onPaid={() => {}} />, { fetch: fakeFetch(() => undefined) });
    expect(screen.getByLabelText(/Test Visa card/)).toBeTruthy();
    expect(screen.getByLabelText(/Test card that is declined/)).toBeTruthy();
    expect(screen.getByRole('button', { name: /Pay ¥1,500/ })).toBeTruthy();
    expect(document.querySelector('script[src*="js.stripe.com"]')).toBeNull();
  });

  it('takes cards with Stripe.js when a publishable key is configured', () => {
    renderApp(<PaymentForm order={order} onPaid={() => {}} />, { fetch: fakeFetch(() => undefined), config: { stripePublishableKey: 'pk_test_abc' } });
    expect(screen.queryByLabelText(/Test Visa card/)).toBeNull();
    expect(screen.getByText(/Stripe test mode/)).toBeTruthy();
    expect(document.querySelector('script[src="https://js.stripe.com/v3/"]')).not.toBeNull();
  });
});
