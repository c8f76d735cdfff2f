import { ApiError, fallbackMessage, parseErrorBody } from './errors';
import { TokenStore } from './tokens';
import type { Order, SessionUser, Ticket, TicketInput, User } from './types';

export const CONSISTENCY_HEADER = 'X-Consistency-Token';
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

export interface ApiClientOptions {
  fetch?: typeof fetch;
  tokens?: TokenStore;
  /** Makes an Idempotency-Key when the caller gives none. */
  newKey?: () => string;
  baseUrl?: string;
}

export interface CommandOptions {
  /** The submission's key: the same for a retry of the same submission. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export function newIdempotencyKey(): string {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // Non-secure contexts (plain http on a LAN address) lack randomUUID.
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The API client: same-origin requests with the session cookie; every GET sends the kept
 * consistency token, every command an Idempotency-Key, and every command answer's token is
 * merged into the kept one.
 */
export class ApiClient {
  readonly tokens: TokenStore;
  private readonly fetchImpl: typeof fetch;
  private readonly newKey: () => string;
  private readonly baseUrl: string;

  constructor(options: ApiClientOptions = {}) {
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.tokens = options.tokens ?? new TokenStore();
    this.newKey = options.newKey ?? newIdempotencyKey;
    this.baseUrl = options.baseUrl ?? '';
  }

  async get<T>(path: string, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    const token = this.tokens.current;
    if (token) headers[CONSISTENCY_HEADER] = token;
    return this.send<T>(path, { method: 'GET', headers, signal });
  }

  async command<T>(method: 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, options: CommandOptions = {}): Promise<T> {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      [IDEMPOTENCY_HEADER]: options.idempotencyKey ?? this.newKey(),
    };
    const init: RequestInit = { method, headers, signal: options.signal };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return this.send<T>(path, init);
  }

  private async send<T>(path: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, { ...init, credentials: 'same-origin', cache: 'no-store' });
    } catch (error) {
      if ((error as { name?: string })?.name === 'AbortError') throw error;
      throw new ApiError(0, [{ message: fallbackMessage(0) }]);
    }
    // Commands answer the token on success and on some refusals alike (a write happened).
    this.tokens.observe(response.headers.get(CONSISTENCY_HEADER));
    const text = await response.text();
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (!response.ok) {
      const retry = Number(response.headers.get('Retry-After'));
      const errors = parseErrorBody(body) ?? [{ message: fallbackMessage(response.status) }];
      throw new ApiError(response.status, errors, Number.isFinite(retry) && retry > 0 ? retry : undefined);
    }
    return body as T;
  }

  // The routes of the public API.

  currentUser(signal?: AbortSignal): Promise<{ currentUser: SessionUser | null }> {
    return this.get('/api/users/currentuser', signal);
  }
  signUp(email: string, password: string, options?: CommandOptions): Promise<User> {
    return this.command('POST', '/api/users/signup', { email, password }, options);
  }
  signIn(email: string, password: string, options?: CommandOptions): Promise<User> {
    return this.command('POST', '/api/users/signin', { email, password }, options);
  }
  signOut(options?: CommandOptions): Promise<unknown> {
    return this.command('POST', '/api/users/signout', {}, options);
  }
  listTickets(signal?: AbortSignal): Promise<Ticket[]> {
    return this.get('/api/tickets', signal);
  }
  getTicket(id: string, signal?: AbortSignal): Promise<Ticket> {
    return this.get(`/api/tickets/${encodeURIComponent(id)}`, signal);
  }
  createTicket(input: TicketInput, options?: CommandOptions): Promise<Ticket> {
    return this.command('POST', '/api/tickets', input, options);
  }
  updateTicket(id: string, input: TicketInput, options?: CommandOptions): Promise<Ticket> {
    return this.command('PUT', `/api/tickets/${encodeURIComponent(id)}`, input, options);
  }
  listOrders(signal?: AbortSignal): Promise<Order[]> {
    return this.get('/api/orders', signal);
  }
  getOrder(id: string, signal?: AbortSignal): Promise<Order> {
    return this.get(`/api/orders/${encodeURIComponent(id)}`, signal);
  }
  createOrder(ticketId: string, options?: CommandOptions): Promise<Order> {
    return this.command('POST', '/api/orders', { ticketId }, options);
  }
  cancelOrder(id: string, options?: CommandOptions): Promise<unknown> {
    return this.command('DELETE', `/api/orders/${encodeURIComponent(id)}`, undefined, options);
  }
  pay(orderId: string, token: string, options?: CommandOptions): Promise<{ id: string }> {
    return this.command('POST', '/api/payments', { orderId, token }, options);
  }
}
