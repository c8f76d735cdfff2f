// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { ApiError, errorsOf, hasErrors, mapErrors, parseErrorBody } from './errors';

describe('API errors', () => {
  it('reads the {errors:[{message, field?}]} shape', () => {
    expect(parseErrorBody({ errors: [{ message: 'Email must be valid', field: 'email' }, { message: 'Not authorized' }] })).toEqual([
      { message: 'Email must be valid', field: 'email' },
      { message: 'Not authorized' },
    ]);
    expect(parseErrorBody({ error: 'x' })).toBeNull();
    expect(parseErrorBody('<html>')).toBeNull();
    expect(parseErrorBody({ errors: [{ nope: 1 }] })).toBeNull();
  });

  it('maps field errors onto the form fields and the rest to the top of the form', () => {
    const errors = mapErrors(
      [
        { message: 'Title is required', field: 'title' },
        { message: 'Price must be greater than 0', field: 'price' },
        { message: 'If-Match must be a version number', field: 'If-Match' },
        { message: 'Not authorized' },
      ],
      ['title', 'price', 'currency'],
    );
    expect(errors.fields).toEqual({ title: ['Title is required'], price: ['Price must be greater than 0'] });
    expect(errors.form).toEqual(['If-Match must be a version number', 'Not authorized']);
    expect(hasErrors(errors)).toBe(true);
  });

  it('follows aliases and drops duplicates', () => {
    const errors = mapErrors(
      [
        { message: 'Token must be provided', field: 'token' },
        { message: 'Token must be provided', field: 'token' },
      ],
      ['card'],
      { token: 'card' },
    );
    expect(errors).toEqual({ fields: { card: ['Token must be provided'] }, form: [] });
  });

  it('turns any thrown value into form errors', () => {
    expect(errorsOf(new ApiError(400, [{ message: 'Your card was declined.' }]), ['token'])).toEqual({ fields: {}, form: ['Your card was declined.'] });
    expect(errorsOf(new Error('boom'), [])).toEqual({ fields: {}, form: ['boom'] });
    expect(hasErrors({ fields: { a: [] }, form: [] })).toBe(false);
  });

  it('knows which failures may be retried with the same key', () => {
    expect(new ApiError(0, []).retryable).toBe(true);
    expect(new ApiError(503, []).retryable).toBe(true);
    expect(new ApiError(429, []).retryable).toBe(true);
    expect(new ApiError(400, []).retryable).toBe(false);
    expect(new ApiError(400, []).errors).toEqual([{ message: 'Request failed (400)' }]);
  });
});
