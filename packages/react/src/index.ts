// @tessera/react: <TesseraProvider client={tessera}> and useSession(). The session follows the
// client's events, so a login, refresh or logout in another tab (which the client hears through
// BroadcastChannel or the storage event) re-renders every component that uses it.

import { createContext, createElement, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import type { Session, TesseraClient } from '@tessera/client';

export type SessionStatus = 'loading' | 'authenticated' | 'anonymous';

export interface UseSession {
  session: Session | null;
  status: SessionStatus;
  login: (credentials: { email: string; password: string }) => Promise<Session>;
  logout: () => Promise<void>;
}

const TesseraContext = createContext<TesseraClient | null>(null);

export function TesseraProvider(props: { client: TesseraClient; children?: ReactNode }): ReactNode {
  return createElement(TesseraContext.Provider, { value: props.client }, props.children);
}

/** The client given to the nearest TesseraProvider. */
export function useTessera(): TesseraClient {
  const client = useContext(TesseraContext);
  if (!client) throw new Error('useTessera/useSession must be used inside <TesseraProvider client={…}>');
  return client;
}

interface View {
  session: Session | null;
  status: SessionStatus;
}

const viewOf = (client: TesseraClient): View => {
  const session = client.getSession();
  return { session, status: session ? 'authenticated' : 'anonymous' };
};

export function useSession(): UseSession {
  const client = useTessera();
  const [view, setView] = useState<View>(() => {
    const session = client.getSession();
    return { session, status: session ? 'authenticated' : 'loading' };
  });
  useEffect(() => {
    let live = true;
    const update = () => {
      if (live) setView(viewOf(client));
    };
    const off = client.on('change', update);
    void client.ready.then(update);
    return () => {
      live = false;
      off();
    };
  }, [client]);
  const login = useCallback((credentials: { email: string; password: string }) => client.login(credentials), [client]);
  const logout = useCallback(() => client.logout(), [client]);
  return { ...view, login, logout };
}
