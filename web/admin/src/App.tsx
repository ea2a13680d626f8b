// The console shell: sign-in, the navigation (behind "Menu" on narrow screens), hash routes.

import { useEffect, useRef, useState, type FormEvent } from 'react';
import { ApiError, current, restore, signIn, signOut, whenSignedOut, type Me } from './api.ts';
import { Anomalies } from './screens/Anomalies.tsx';
import { Audit } from './screens/Audit.tsx';
import { Live } from './screens/Live.tsx';
import { Sessions } from './screens/Sessions.tsx';
import { Tenants } from './screens/Tenants.tsx';
import { Users } from './screens/Users.tsx';
import { Loading } from './ui.tsx';

const SCREENS = { sessions: 'Sessions', users: 'Users', audit: 'Audit', anomalies: 'Anomalies', live: 'Live', tenants: 'Tenants' } as const;
type Screen = keyof typeof SCREENS;

function screenOf(hash: string): Screen {
  const s = hash.replace(/^#\/?/, '');
  return s in SCREENS ? (s as Screen) : 'sessions';
}

export function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [restoring, setRestoring] = useState(true);
  const [screen, setScreen] = useState<Screen>(screenOf(location.hash));
  const [menuOpen, setMenuOpen] = useState(false);

  useEffect(() => {
    whenSignedOut(() => setMe(null));
    void restore().then((m) => {
      setMe(m);
      setRestoring(false);
    });
    const onHash = () => {
      setScreen(screenOf(location.hash));
      setMenuOpen(false);
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  const shown = useRef<Screen | null>(null);
  useEffect(() => {
    document.title = me ? `${SCREENS[screen]} · Tessera admin` : 'Sign in · Tessera admin';
    // After following a link (not on the first screen), focus moves to the new screen's content.
    if (me && shown.current !== null && shown.current !== screen) document.getElementById('main')?.focus();
    if (me) shown.current = screen;
  }, [screen, me]);

  if (restoring) return <Loading what="the console" />;
  if (!me) return <SignIn onSignedIn={setMe} />;

  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Tessera admin</span>
        <button type="button" className="menu-button" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen((o) => !o)}>
          Menu
        </button>
        <nav id="nav" aria-label="Main" className={menuOpen ? 'open' : undefined}>
          <ul>
            {(Object.keys(SCREENS) as Screen[]).map((s) => (
              <li key={s}>
                <a href={`#/${s}`} aria-current={s === screen ? 'page' : undefined} onClick={() => setMenuOpen(false)}>
                  {SCREENS[s]}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="whoami">
          <span title={current()?.platform ? 'Platform administrator: every tenant' : `Administrator of ${me.tenantId}`}>
            {me.email} <small>({me.platform ? 'platform' : me.tenantId})</small>
          </span>
          <button type="button" onClick={() => void signOut().finally(() => setMe(null))}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {screen === 'sessions' && <Sessions />}
        {screen === 'users' && <Users />}
        {screen === 'audit' && <Audit />}
        {screen === 'anomalies' && <Anomalies />}
        {screen === 'live' && <Live />}
        {screen === 'tenants' && <Tenants />}
      </main>
    </div>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (m: Me) => void }) {
  const [tenant, setTenant] = useState('platform');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      onSignedIn(await signIn(tenant.trim(), email.trim(), password));
    } catch (err) {
      const code = err instanceof ApiError ? err.code : '';
      setError(
        code === 'invalid_credentials'
          ? 'The email or password is wrong.'
          : code === 'user_disabled'
            ? 'This account is disabled. Ask another administrator.'
            : code === 'login_throttled'
              ? 'Too many failed attempts. Wait a few minutes and try again.'
              : err instanceof Error
                ? err.message
                : 'Signing in failed.',
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={(e) => void submit(e)} aria-labelledby="signin-title">
        <h1 id="signin-title">Tessera admin</h1>
        <p className="muted">Sign in with an administrator account.</p>
        {error && (
          <p className="state error" role="alert">
            {error}
          </p>
        )}
        <label className="field">
          <span>Tenant</span>
          <input name="tenant" value={tenant} autoComplete="organization" required onChange={(e) => setTenant(e.target.value)} />
        </label>
        <label className="field">
          <span>Email</span>
          <input name="email" type="email" value={email} autoComplete="username" required onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label className="field">
          <span>Password</span>
          <input name="password" type="password" value={password} autoComplete="current-password" required onChange={(e) => setPassword(e.target.value)} />
        </label>
        <button type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
