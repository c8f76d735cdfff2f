/**
 * App-wide state: the API client, the runtime config, the session and the live stream.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { ApiClient } from './api/client';
import type { Order, RuntimeConfig, SessionUser, Ticket, User } from './api/types';

// ---- API client -----------------------------------------------------------------------------

const ApiContext = createContext<ApiClient | null>(null);

export function ApiProvider({ client, children }: { client: ApiClient; children: ReactNode }) {
  return <ApiContext.Provider value={client}>{children}</ApiContext.Provider>;
}

export function useApi(): ApiClient {
  const client = useContext(ApiContext);
  if (!client) throw new Error('useApi outside ApiProvider');
  return client;
}

// ---- Runtime config (/config.json) ----------------------------------------------------------

const ConfigContext = createContext<RuntimeConfig>({});

/**
 * Reads `/config.json`. Absent (404), not JSON (a server answering its index page), or
 * unreachable: no settings, which means the sandbox gateway's test tokens.
 */
export async function loadConfig(fetchImpl: typeof fetch = fetch): Promise<RuntimeConfig> {
  try {
    const response = await fetchImpl('/config.json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!response.ok) return {};
    const body: unknown = await response.json();
    if (typeof body !== 'object' || body === null) return {};
    const key = (body as { stripePublishableKey?: unknown }).stripePublishableKey;
    return typeof key === 'string' && /^pk_[A-Za-z0-9_]+$/.test(key.trim()) ? { stripePublishableKey: key.trim() } : {};
  } catch {
    return {};
  }
}

export function ConfigProvider({ config, children }: { config: RuntimeConfig; children: ReactNode }) {
  return <ConfigContext.Provider value={config}>{children}</ConfigContext.Provider>;
}

export function useConfig(): RuntimeConfig {
  return useContext(ConfigContext);
}

// ---- Session --------------------------------------------------------------------------------

interface SessionValue {
  /** undefined while the first check runs; null when signed out. */
  user: SessionUser | User | null | undefined;
  setUser: (user: SessionUser | User | null) => void;
  refresh: () => Promise<void>;
}

const SessionContext = createContext<SessionValue | null>(null);

export function SessionProvider({ children, initialUser }: { children: ReactNode; initialUser?: SessionUser | User | null }) {
  const api = useApi();
  const [user, setUser] = useState<SessionUser | User | null | undefined>(initialUser);

  const refresh = useCallback(async () => {
    try {
      const { currentUser } = await api.currentUser();
      setUser(currentUser ?? null);
    } catch {
      setUser((previous) => previous ?? null);
    }
  }, [api]);

  useEffect(() => {
    if (initialUser === undefined) void refresh();
  }, [initialUser, refresh]);

  const value = useMemo(() => ({ user, setUser, refresh }), [user, refresh]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside SessionProvider');
  return value;
}

// ---- Live updates (GET /api/live, Server-Sent Events) ---------------------------------------

export type LiveStatus = 'off' | 'connecting' | 'open' | 'retrying';

export type LiveEvent = { type: 'ticket'; ticket: Ticket } | { type: 'order'; order: Order } | { type: 'resync' };

type Listener = (event: LiveEvent) => void;

interface LiveValue {
  status: LiveStatus;
  subscribe: (listener: Listener) => () => void;
}

const LiveContext = createContext<LiveValue>({ status: 'off', subscribe: () => () => {} });

/** Delay before a new stream when the browser gave up on one (a non-200 answer). */
const RECONNECT_MS = 5_000;

/**
 * One EventSource on `/api/live` while signed in (same origin: the session cookie goes with
 * it). The browser reconnects by itself with `Last-Event-ID`, and the server replays what the
 * client missed or sends `reset`. Listeners get `resync` (read your page again) on `reset` and
 * on the first `ready` of every new EventSource, since the page may have been read before the
 * stream started.
 */
export function LiveProvider({ children, eventSource }: { children: ReactNode; eventSource?: (url: string) => EventSource }) {
  const { user, refresh } = useSession();
  const refreshSession = useRef(refresh);
  refreshSession.current = refresh;
  const [status, setStatus] = useState<LiveStatus>('off');
  const listeners = useRef(new Set<Listener>());
  const userId = user?.id;

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  useEffect(() => {
    if (!userId || (typeof EventSource === 'undefined' && !eventSource)) {
      setStatus('off');
      return;
    }
    let stopped = false;
    let source: EventSource | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const emit = (event: LiveEvent) => {
      for (const listener of [...listeners.current]) {
        try {
          listener(event);
        } catch (error) {
          console.error('live listener failed', error);
        }
      }
    };
    const parse = (data: string): unknown => {
      try {
        return JSON.parse(data);
      } catch {
        return null;
      }
    };
    const open = () => {
      if (stopped) return;
      setStatus('connecting');
      const es = eventSource ? eventSource('/api/live') : new EventSource('/api/live');
      source = es;
      let readyOnce = false;
      es.addEventListener('ready', () => {
        setStatus('open');
        if (!readyOnce) {
          readyOnce = true;
          emit({ type: 'resync' });
        }
      });
      es.addEventListener('reset', () => emit({ type: 'resync' }));
      es.addEventListener('ticket', (e) => {
        const ticket = parse((e as MessageEvent).data) as Ticket | null;
        if (ticket && typeof ticket.id === 'string') emit({ type: 'ticket', ticket });
      });
      es.addEventListener('order', (e) => {
        const order = parse((e as MessageEvent).data) as Order | null;
        if (order && typeof order.id === 'string') emit({ type: 'order', order });
      });
      es.onerror = () => {
        if (stopped) return;
        if (es.readyState === 2 /* CLOSED */) {
          // The server refused the stream (session expired, too many streams, restarting):
          // the browser will not retry by itself. Check the session (signed out: the stream
          // stops), and try again later with a new stream.
          setStatus('retrying');
          void refreshSession.current();
          timer = setTimeout(open, RECONNECT_MS);
        } else {
          setStatus('connecting');
        }
      };
    };
    open();
    return () => {
      stopped = true;
      clearTimeout(timer);
      source?.close();
      setStatus('off');
    };
  }, [userId, eventSource]);

  const value = useMemo(() => ({ status, subscribe }), [status, subscribe]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLiveStatus(): LiveStatus {
  return useContext(LiveContext).status;
}

/** Calls `listener` for every live event while mounted (the latest listener, no resubscribe). */
export function useLive(listener: Listener): void {
  const { subscribe } = useContext(LiveContext);
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => subscribe((event) => latest.current(event)), [subscribe]);
}
