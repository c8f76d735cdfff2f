/** Shapes of the public API (see /api/openapi.json). */

export interface User {
  id: string;
  email: string;
}

export interface SessionUser extends User {
  iat: number;
}

export interface Ticket {
  id: string;
  title: string;
  /** In the currency's major unit (20.5 USD). */
  price: number;
  /** ISO 4217 code; USD when absent. */
  currency?: string;
  userId: string;
  version: number;
  /** Set while the ticket is reserved by an order (or sold). */
  orderId?: string;
}

export type OrderStatus = 'created' | 'cancelled' | 'awaiting:payment' | 'complete';

export interface Order {
  id: string;
  userId: string;
  status: OrderStatus;
  /** ISO-8601 UTC. */
  expiresAt: string;
  ticket: { id: string; title: string; price: number; currency?: string };
  version: number;
}

export interface TicketInput {
  title: string;
  price: number | string;
  currency?: string;
}

/** Runtime configuration read from `/config.json` (optional). */
export interface RuntimeConfig {
  stripePublishableKey?: string;
}
