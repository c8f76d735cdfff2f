import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useId,
  useMemo,
  useRef,
  useState,
  type FormEvent,
  type InputHTMLAttributes,
  type ReactNode,
  type SelectHTMLAttributes,
} from 'react';
import { hasErrors, type FormErrors } from '../api/errors';
import type { OrderStatus } from '../api/types';
import { useRouter } from '../router';

// ---- Announcements (one polite live region for the whole app) -------------------------------

const AnnounceContext = createContext<(message: string) => void>(() => {});

export function AnnouncerProvider({ children }: { children: ReactNode }) {
  const [message, setMessage] = useState('');
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  const announce = useCallback((text: string) => {
    // Emptied first, so that the same words said twice are announced twice.
    setMessage('');
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setMessage(text), 60);
  }, []);
  useEffect(() => () => clearTimeout(timer.current), []);
  return (
    <AnnounceContext.Provider value={announce}>
      {children}
      <div className="visually-hidden" role="status" aria-live="polite" aria-atomic="true" data-testid="announcer">
        {message}
      </div>
    </AnnounceContext.Provider>
  );
}

export function useAnnounce(): (message: string) => void {
  return useContext(AnnounceContext);
}

// ---- Page heading: focus lands here after a navigation inside the app ------------------------

export function PageHeading({ children, lead }: { children: ReactNode; lead?: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  const { location } = useRouter();
  useEffect(() => {
    // Not on the page the browser loaded: there the reader starts at the top anyway.
    if (location.key > 0 && !document.activeElement?.closest('[data-keep-focus]')) ref.current?.focus();
  }, [location.key]);
  return (
    <header className="page-heading">
      <h1 ref={ref} tabIndex={-1}>
        {children}
      </h1>
      {lead ? <p className="lead">{lead}</p> : null}
    </header>
  );
}

// ---- Forms ----------------------------------------------------------------------------------

interface FormContextValue {
  idFor: (name: string) => string;
  errorsFor: (name: string) => string[];
  pending: boolean;
}

const FormContext = createContext<FormContextValue>({ idFor: (n) => n, errorsFor: () => [], pending: false });

interface FormProps {
  /** Field names in display order: focus goes to the first one with an error. */
  fields: readonly string[];
  errors: FormErrors;
  pending?: boolean;
  onSubmit: () => void;
  children: ReactNode;
  label?: string;
  className?: string;
}

/**
 * A form whose validation is the API's: no browser validation blocks a submission, and the
 * API's messages are shown next to their fields (field-less ones at the top). After a failed
 * submission focus moves to the first field in error, or to the message at the top.
 */
export function Form({ fields, errors, pending = false, onSubmit, children, label, className }: FormProps) {
  const base = useId();
  const summaryRef = useRef<HTMLDivElement>(null);
  const idFor = useCallback((name: string) => `${base}-${name}`, [base]);
  const errorsFor = useCallback((name: string) => errors.fields[name] ?? [], [errors]);

  useEffect(() => {
    if (!hasErrors(errors)) return;
    const first = fields.find((name) => (errors.fields[name] ?? []).length > 0);
    const target = first ? document.getElementById(idFor(first)) : summaryRef.current;
    (target ?? summaryRef.current)?.focus();
  }, [errors, fields, idFor]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!pending) onSubmit();
  };

  const value = useMemo(() => ({ idFor, errorsFor, pending }), [idFor, errorsFor, pending]);
  return (
    <FormContext.Provider value={value}>
      <form noValidate onSubmit={submit} aria-label={label} aria-busy={pending || undefined} className={className ?? 'form'}>
        {errors.form.length > 0 ? (
          <div className="alert alert-error" ref={summaryRef} tabIndex={-1} data-testid="form-errors">
            <ul>
              {errors.form.map((message) => (
                <li key={message}>{message}</li>
              ))}
            </ul>
          </div>
        ) : null}
        {children}
      </form>
    </FormContext.Provider>
  );
}

/** The id and errors of a field of the enclosing form (for custom controls). */
export function useFormField(name: string): { id: string; errors: string[] } {
  const { idFor, errorsFor } = useContext(FormContext);
  return { id: idFor(name), errors: errorsFor(name) };
}

function FieldShell({ name, label, hint, children }: { name: string; label: string; hint?: ReactNode; children: (props: { id: string; describedBy?: string; invalid: boolean }) => ReactNode }) {
  const { idFor, errorsFor } = useContext(FormContext);
  const id = idFor(name);
  const errors = errorsFor(name);
  const hintId = hint ? `${id}-hint` : undefined;
  const errorId = errors.length > 0 ? `${id}-error` : undefined;
  const describedBy = [errorId, hintId].filter(Boolean).join(' ') || undefined;
  return (
    <div className={`field${errors.length > 0 ? ' field-invalid' : ''}`} data-field={name}>
      <label htmlFor={id}>{label}</label>
      {hint ? (
        <p className="hint" id={hintId}>
          {hint}
        </p>
      ) : null}
      {errors.length > 0 ? (
        <p className="field-error" id={errorId} data-testid={`error-${name}`}>
          <span aria-hidden="true" className="field-error-icon">!</span> {errors.join(' ')}
        </p>
      ) : null}
      {children({ id, describedBy, invalid: errors.length > 0 })}
    </div>
  );
}

type TextFieldProps = Omit<InputHTMLAttributes<HTMLInputElement>, 'name' | 'id'> & { name: string; label: string; hint?: ReactNode };

export function TextField({ name, label, hint, ...input }: TextFieldProps) {
  return (
    <FieldShell name={name} label={label} hint={hint}>
      {({ id, describedBy, invalid }) => <input id={id} name={name} aria-invalid={invalid || undefined} aria-describedby={describedBy} {...input} />}
    </FieldShell>
  );
}

type SelectFieldProps = Omit<SelectHTMLAttributes<HTMLSelectElement>, 'name' | 'id'> & { name: string; label: string; hint?: ReactNode; children: ReactNode };

export function SelectField({ name, label, hint, children, ...select }: SelectFieldProps) {
  return (
    <FieldShell name={name} label={label} hint={hint}>
      {({ id, describedBy, invalid }) => (
        <select id={id} name={name} aria-invalid={invalid || undefined} aria-describedby={describedBy} {...select}>
          {children}
        </select>
      )}
    </FieldShell>
  );
}

export function SubmitButton({ children, pendingLabel, className }: { children: ReactNode; pendingLabel?: string; className?: string }) {
  const { pending } = useContext(FormContext);
  return (
    <button type="submit" className={className ?? 'button button-primary'} aria-disabled={pending || undefined} data-pending={pending || undefined}>
      {pending ? (
        <>
          <span className="spinner" aria-hidden="true" /> {pendingLabel ?? children}
        </>
      ) : (
        children
      )}
    </button>
  );
}

// ---- Small pieces ---------------------------------------------------------------------------

const STATUS_LABELS: Record<OrderStatus, string> = {
  created: 'Awaiting payment',
  'awaiting:payment': 'Payment in progress',
  complete: 'Complete',
  cancelled: 'Cancelled',
};

export function statusLabel(status: OrderStatus): string {
  return STATUS_LABELS[status] ?? status;
}

export function StatusBadge({ status }: { status: OrderStatus }) {
  const tone = status === 'complete' ? 'success' : status === 'cancelled' ? 'muted' : 'warning';
  return (
    <span className={`badge badge-${tone}`} data-status={status}>
      {statusLabel(status)}
    </span>
  );
}

export function Alert({ tone = 'error', children, title }: { tone?: 'error' | 'info' | 'success'; children: ReactNode; title?: string }) {
  return (
    <div className={`alert alert-${tone}`} role={tone === 'error' ? 'alert' : undefined}>
      {title ? <p className="alert-title">{title}</p> : null}
      {children}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" /> {label}
    </p>
  );
}
