import { PageHeading } from '../components/ui';
import { useTitle } from '../hooks';
import { Link } from '../router';

export function NotFoundPage({ what = 'page' }: { what?: string }) {
  useTitle('Not found');
  return (
    <section className="narrow">
      <PageHeading>Not found</PageHeading>
      <p>There is no such {what}, or it is not yours to see.</p>
      <p>
        <Link to="/">See the tickets for sale</Link>
      </p>
    </section>
  );
}

/** Shown instead of a page that needs a signed-in user. */
export function SignInRequired({ title, next }: { title: string; next: string }) {
  useTitle(title);
  const query = `?next=${encodeURIComponent(next)}`;
  return (
    <section className="narrow">
      <PageHeading>{title}</PageHeading>
      <div className="card">
        <p>You need to be signed in for this.</p>
        <p className="actions">
          <Link className="button button-primary" to={`/signin${query}`}>
            Sign in
          </Link>
          <Link className="button" to={`/signup${query}`}>
            Create an account
          </Link>
        </p>
      </div>
    </section>
  );
}
