import { useCallback, useEffect, useRef, useState } from 'react';
import { newIdempotencyKey } from './api/client';
import { ApiError, errorsOf, noErrors, type FormErrors } from './api/errors';

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | Error | undefined;
  loading: boolean;
  /** Reads again; `silent` keeps showing the current data meanwhile. */
  reload: (silent?: boolean) => void;
  /** Replaces the data (a live change, a command's answer). */
  update: (change: (data: T | undefined) => T | undefined) => void;
}

/** Loads `load` on mount and whenever `deps` change; a newer read wins over an older one. */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError | Error; loading: boolean }>({ loading: true });
  const generation = useRef(0);
  const controller = useRef<AbortController | null>(null);
  const loader = useRef(load);
  loader.current = load;
  // Changes that came while a read was on its way: applied again to what it brings (each
  // change checks versions, so one the read already reflects changes nothing).
  const inFlightChanges = useRef<Array<(data: T | undefined) => T | undefined>>([]);
  const reading = useRef(false);

  const run = useCallback((silent: boolean) => {
    const mine = ++generation.current;
    controller.current?.abort();
    const abort = new AbortController();
    controller.current = abort;
    inFlightChanges.current = [];
    reading.current = true;
    if (!silent) setState((s) => ({ data: s.data, loading: true }));
    loader
      .current(abort.signal)
      .then((read) => {
        if (mine !== generation.current) return;
        let data: T | undefined = read;
        for (const change of inFlightChanges.current) data = change(data);
        inFlightChanges.current = [];
        reading.current = false;
        setState({ data, loading: false });
      })
      .catch((error: unknown) => {
        if (abort.signal.aborted || mine !== generation.current) return;
        reading.current = false;
        inFlightChanges.current = [];
        // A silent re-read that fails keeps what is shown.
        setState((s) => (silent && s.data !== undefined ? { ...s, loading: false } : { error: error as Error, loading: false }));
      });
  }, []);

  useEffect(() => {
    setState({ loading: true });
    run(false);
    return () => controller.current?.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  const reload = useCallback((silent = false) => run(silent), [run]);
  const update = useCallback((change: (data: T | undefined) => T | undefined) => {
    if (reading.current) inFlightChanges.current.push(change);
    setState((s) => ({ ...s, data: change(s.data) }));
  }, []);

  return { data: state.data, error: state.error, loading: state.loading, reload, update };
}

export interface Command {
  errors: FormErrors;
  pending: boolean;
  /**
   * Runs a command once at a time. The Idempotency-Key is kept for a retry of the same body
   * after a failure that may not have been final (network, 5xx, 429); any other outcome, or a
   * different body, gets a new key. Returns the answer, or undefined when it failed.
   */
  run: <T>(body: unknown, send: (idempotencyKey: string) => Promise<T>) => Promise<T | undefined>;
  setErrors: (errors: FormErrors) => void;
}

export function useCommand(fields: readonly string[], aliases?: Record<string, string>): Command {
  const [errors, setErrors] = useState<FormErrors>(noErrors);
  const [pending, setPending] = useState(false);
  const inFlight = useRef(false);
  const kept = useRef<{ key: string; body: string } | null>(null);
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const fieldList = useRef(fields);
  fieldList.current = fields;
  const aliasMap = useRef(aliases);
  aliasMap.current = aliases;

  const run = useCallback(async <T,>(body: unknown, send: (key: string) => Promise<T>): Promise<T | undefined> => {
    if (inFlight.current) return undefined;
    inFlight.current = true;
    setPending(true);
    const fingerprint = JSON.stringify(body ?? null);
    if (!kept.current || kept.current.body !== fingerprint) kept.current = { key: newIdempotencyKey(), body: fingerprint };
    try {
      const answer = await send(kept.current.key);
      kept.current = null;
      if (mounted.current) setErrors(noErrors);
      return answer;
    } catch (error) {
      if (!(error instanceof ApiError && error.retryable)) kept.current = null;
      if (mounted.current) setErrors(errorsOf(error, fieldList.current, aliasMap.current));
      return undefined;
    } finally {
      inFlight.current = false;
      if (mounted.current) setPending(false);
    }
  }, []);

  return { errors, pending, run, setErrors };
}

/** `Date.now()`, re-rendered every `intervalMs` while `active`. */
export function useNow(active: boolean, intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const id = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(id);
  }, [active, intervalMs]);
  return now;
}

/** Sets the document title while mounted. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Ticketing` : 'Ticketing';
  }, [title]);
}
