/** One entry of the API's error shape `{errors: [{message, field?}]}`. */
export interface ErrorEntry {
  message: string;
  field?: string;
}

/** A failed request: its status and the API's error entries (never empty). */
export class ApiError extends Error {
  readonly status: number;
  readonly errors: ErrorEntry[];
  /** Seconds to wait before retrying (from `Retry-After`), when the server said so. */
  readonly retryAfter?: number;

  constructor(status: number, errors: ErrorEntry[], retryAfter?: number) {
    super(errors.map((e) => e.message).join('; ') || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.errors = errors.length > 0 ? errors : [{ message: `Request failed (${status})` }];
    this.retryAfter = retryAfter;
  }

  /** Whether repeating the same request (with the same Idempotency-Key) may succeed. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** Reads the error entries of a body; `null` when it is not the API's error shape. */
export function parseErrorBody(body: unknown): ErrorEntry[] | null {
  if (typeof body !== 'object' || body === null) return null;
  const errors = (body as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) return null;
  const entries: ErrorEntry[] = [];
  for (const entry of errors) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { message, field } = entry as { message?: unknown; field?: unknown };
    if (typeof message !== 'string' || message.trim() === '') continue;
    entries.push(typeof field === 'string' && field !== '' ? { message, field } : { message });
  }
  return entries.length > 0 ? entries : null;
}

/** A message for a status whose body said nothing usable. */
export function fallbackMessage(status: number): string {
  if (status === 0) return 'Could not reach the server. Check your connection and try again.';
  if (status === 401) return 'Please sign in to do that.';
  if (status === 404) return 'Not found.';
  if (status === 413) return 'That is too large to send.';
  if (status === 429) return 'Too many attempts. Please wait a moment and try again.';
  if (status >= 500) return 'The service is unavailable right now. Please try again in a moment.';
  return `Something went wrong (${status}).`;
}

/** Errors of a form: per field, and those that belong to no field of the form. */
export interface FormErrors {
  fields: Record<string, string[]>;
  form: string[];
}

export const noErrors: FormErrors = Object.freeze({ fields: {}, form: [] }) as FormErrors;

/**
 * Sorts error entries onto a form's fields. An entry whose field the form does not show (or
 * that names no field) goes to the top of the form, so no message is ever dropped.
 * `aliases` maps an API field name onto the form's field name when they differ.
 */
export function mapErrors(
  errors: ErrorEntry[],
  formFields: readonly string[],
  aliases: Record<string, string> = {},
): FormErrors {
  const fields: Record<string, string[]> = {};
  const form: string[] = [];
  for (const { message, field } of errors) {
    const name = field ? (aliases[field] ?? field) : undefined;
    if (name && formFields.includes(name)) {
      const list = (fields[name] ??= []);
      if (!list.includes(message)) list.push(message);
    } else if (!form.includes(message)) {
      form.push(message);
    }
  }
  return { fields, form };
}

/** The form errors of any thrown value. */
export function errorsOf(error: unknown, formFields: readonly string[], aliases?: Record<string, string>): FormErrors {
  if (error instanceof ApiError) return mapErrors(error.errors, formFields, aliases);
  const message = error instanceof Error && error.message ? error.message : 'Something went wrong.';
  return { fields: {}, form: [message] };
}

export function hasErrors(errors: FormErrors): boolean {
  return errors.form.length > 0 || Object.values(errors.fields).some((list) => list.length > 0);
}
