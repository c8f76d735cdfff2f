import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { fakeFetch, json, renderApp } from '../test/helpers';
import { AuthPage } from './AuthPage';

describe('sign-up form', () => {
  it('shows the API messages next to their fields and moves focus to the first one', async () => {
    const fetch = fakeFetch((url, init) => {
      if (url === '/api/users/signup' && init.method === 'POST') {
        return json(400, {
          errors: [
            { message: 'Email must be valid', field: 'email' },
            { message: 'Password must be between 4 and 20 characters', field: 'password' },
          ],
        });
      }
    });
    renderApp(<AuthPage mode="signup" />, { fetch, user: null, path: '/signup' });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('Email'), 'not-an-email');
    await user.type(screen.getByLabelText('Password'), 'ab');
    await user.click(screen.getByRole('button', { name: 'Create account' }));

    const email = screen.getByLabelText('Email');
    await waitFor(() => expect(email).toHaveProperty('ariaInvalid', 'true'));
    expect(screen.getByTestId('error-email').textContent).toContain('Email must be valid');
    expect(screen.getByTestId('error-password').textContent).toContain('Password must be between 4 and 20 characters');
    // The message is part of the field's description, so a screen reader reads it with the field.
    expect(email.getAttribute('aria-describedby')).toContain(screen.getByTestId('error-email').id);
    expect(document.activeElement).toBe(email);

    const [, init] = fetch.mock.calls[0];
    const headers = new Headers(init!.headers);
    expect(headers.get('Idempotency-Key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(init!.body as string)).toEqual({ email: 'not-an-email', password: 'ab' });
  });

  it('shows a field-less error at the top of the form and focuses it', async () => {
    const fetch = fakeFetch((url) => (url === '/api/users/signin' ? json(400, { errors: [{ message: 'Invalid credentials' }] }) : undefined));
    renderApp(<AuthPage mode="signin" />, { fetch, user: null, path: '/signin' });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('Email'), 'bob@example.com');
    await user.type(screen.getByLabelText('Password'), 'wrong-password');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    const summary = await screen.findByTestId('form-errors');
    expect(summary.textContent).toBe('Invalid credentials');
    expect(document.activeElement).toBe(summary);
    expect(screen.queryByTestId('error-email')).toBeNull();
  });
});
