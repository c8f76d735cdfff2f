import { useState } from 'react';
import { useApi, useSession } from '../context';
import { useCommand, useTitle } from '../hooks';
import { Link, safeNext, useRouter, useSearchParam } from '../router';
import { Form, PageHeading, SubmitButton, TextField, useAnnounce } from '../components/ui';

const FIELDS = ['email', 'password'] as const;

/** Sign up (`mode="signup"`) or sign in. */
export function AuthPage({ mode }: { mode: 'signup' | 'signin' }) {
  const api = useApi();
  const { setUser, refresh } = useSession();
  const { navigate } = useRouter();
  const announce = useAnnounce();
  const next = safeNext(useSearchParam('next'));
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const command = useCommand(FIELDS);
  const signup = mode === 'signup';
  useTitle(signup ? 'Create an account' : 'Sign in');

  const submit = async () => {
    const body = { email, password };
    const user = await command.run(body, (key) =>
      signup ? api.signUp(email, password, { idempotencyKey: key }) : api.signIn(email, password, { idempotencyKey: key }),
    );
    if (!user) return;
    setUser(user);
    void refresh();
    announce(signup ? `Welcome! You are signed in as ${user.email}.` : `Signed in as ${user.email}.`);
    navigate(next, { replace: true });
  };

  const other = next !== '/' ? `?next=${encodeURIComponent(next)}` : '';
  return (
    <section className="narrow">
      <PageHeading lead={signup ? 'Sell tickets you cannot use and buy ones you want.' : 'Welcome back.'}>
        {signup ? 'Create an account' : 'Sign in'}
      </PageHeading>
      <div className="card">
        <Form fields={FIELDS} errors={command.errors} pending={command.pending} onSubmit={submit} label={signup ? 'Sign up' : 'Sign in'}>
          <TextField
            name="email"
            label="Email"
            type="email"
            autoComplete="email"
            inputMode="email"
            autoCapitalize="none"
            spellCheck={false}
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
          <TextField
            name="password"
            label="Password"
            type="password"
            autoComplete={signup ? 'new-password' : 'current-password'}
            hint={signup ? '4 to 20 characters.' : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <SubmitButton pendingLabel={signup ? 'Creating account…' : 'Signing in…'}>{signup ? 'Create account' : 'Sign in'}</SubmitButton>
        </Form>
      </div>
      <p className="aside">
        {signup ? (
          <>
            Already have an account? <Link to={`/signin${other}`}>Sign in</Link>
          </>
        ) : (
          <>
            New here? <Link to={`/signup${other}`}>Create an account</Link>
          </>
        )}
      </p>
    </section>
  );
}
