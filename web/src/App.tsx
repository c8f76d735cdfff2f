import { useState, type ReactNode } from 'react';
import { ApiClient } from './api/client';
import type { RuntimeConfig } from './api/types';
import { AnnouncerProvider, useAnnounce } from './components/ui';
import { ApiProvider, ConfigProvider, LiveProvider, SessionProvider, useApi, useLiveStatus, useSession } from './context';
import { AuthPage } from './pages/AuthPage';
import { NotFoundPage, SignInRequired } from './pages/NotFoundPage';
import { OrderPage } from './pages/OrderPage';
import { OrdersPage } from './pages/OrdersPage';
import { EditTicketPage, SellPage } from './pages/TicketFormPage';
import { TicketPage } from './pages/TicketPage';
import { TicketsPage } from './pages/TicketsPage';
import { Link, matchPath, RouterProvider, useRouter } from './router';

export function App({ client, config }: { client: ApiClient; config: RuntimeConfig }) {
  return (
    <ApiProvider client={client}>
      <ConfigProvider config={config}>
        <RouterProvider>
          <AnnouncerProvider>
            <SessionProvider>
              <LiveProvider>
                <Layout>
                  <Routes />
                </Layout>
              </LiveProvider>
            </SessionProvider>
          </AnnouncerProvider>
        </RouterProvider>
      </ConfigProvider>
    </ApiProvider>
  );
}

function Routes() {
  const { location } = useRouter();
  const { user } = useSession();
  const path = location.pathname;
  const signedIn = (title: string, page: ReactNode) =>
    user === undefined ? null : user ? page : <SignInRequired title={title} next={path + location.search} />;

  if (path === '/' || path === '/tickets') return <TicketsPage />;
  if (path === '/signup') return <AuthPage key="signup" mode="signup" />;
  if (path === '/signin') return <AuthPage key="signin" mode="signin" />;
  if (matchPath('/tickets/new', path)) return signedIn('Sell a ticket', <SellPage />);
  let params = matchPath('/tickets/:id/edit', path);
  if (params) return signedIn('Edit ticket', <EditTicketPage key={params.id} id={params.id} />);
  params = matchPath('/tickets/:id', path);
  if (params) return <TicketPage key={params.id} id={params.id} />;
  if (matchPath('/orders', path)) return signedIn('My orders', <OrdersPage />);
  params = matchPath('/orders/:id', path);
  if (params) return signedIn('Order', <OrderPage key={params.id} id={params.id} />);
  return <NotFoundPage />;
}

function LiveIndicator() {
  const status = useLiveStatus();
  if (status === 'off') return null;
  const label = status === 'open' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Reconnecting…';
  return (
    <span className={`live live-${status}`} data-testid="live-status" data-live={status} title={status === 'open' ? 'Pages update by themselves' : 'Live updates are reconnecting'}>
      <span className="live-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

function Layout({ children }: { children: ReactNode }) {
  const api = useApi();
  const { user, setUser } = useSession();
  const { navigate, location } = useRouter();
  const announce = useAnnounce();
  const [signingOut, setSigningOut] = useState(false);
  const [menuOpen, setMenuOpen] = useState(false);

  const signOut = async () => {
    if (signingOut) return;
    setSigningOut(true);
    try {
      await api.signOut();
    } catch {
      // The cookie may be gone already; the page forgets the user either way.
    } finally {
      setSigningOut(false);
    }
    setUser(null);
    announce('You are signed out.');
    navigate('/');
  };

  const here = (to: string) => (location.pathname === to || (to === '/' && location.pathname === '/tickets') ? { 'aria-current': 'page' as const } : {});
  const nav = (
    <>
      <Link to="/" {...here('/')} onClick={() => setMenuOpen(false)}>
        Tickets
      </Link>
      {user ? (
        <>
          <Link to="/tickets/new" {...here('/tickets/new')} onClick={() => setMenuOpen(false)}>
            Sell
          </Link>
          <Link to="/orders" {...here('/orders')} onClick={() => setMenuOpen(false)}>
            My orders
          </Link>
        </>
      ) : null}
    </>
  );

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="topbar-inner">
          <Link to="/" className="brand" aria-label="Ticketing, home">
            <span className="brand-mark" aria-hidden="true">
              ◆
            </span>
            Ticketing
          </Link>
          <LiveIndicator />
          <button
            type="button"
            className="menu-button"
            aria-expanded={menuOpen}
            aria-controls="site-nav"
            onClick={() => setMenuOpen((open) => !open)}
          >
            <span aria-hidden="true">☰</span>
            <span className="visually-hidden">Menu</span>
          </button>
          <nav id="site-nav" className={`nav${menuOpen ? ' nav-open' : ''}`} aria-label="Main">
            <div className="nav-links">{nav}</div>
            <div className="nav-account">
              {user ? (
                <>
                  <span className="who" data-testid="current-user" title={user.email}>
                    {user.email}
                  </span>
                  <button type="button" className="button button-small" onClick={signOut} aria-disabled={signingOut || undefined}>
                    Sign out
                  </button>
                </>
              ) : user === null ? (
                <>
                  <Link to="/signin" {...here('/signin')} onClick={() => setMenuOpen(false)}>
                    Sign in
                  </Link>
                  <Link to="/signup" className="button button-small button-primary" onClick={() => setMenuOpen(false)}>
                    Sign up
                  </Link>
                </>
              ) : null}
            </div>
          </nav>
        </div>
      </header>
      <main id="main" className="main">
        {children}
      </main>
      <footer className="footer">
        <p>Ticketing · a marketplace for tickets you cannot use</p>
      </footer>
    </div>
  );
}
