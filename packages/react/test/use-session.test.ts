// @vitest-environment jsdom
// useSession across tabs: the component's tab (client A) and "another tab" (client B) share the
// browser's storage key; B logs in and out, and A's component follows. The other tab is a second
// client in this window: it reaches A through BroadcastChannel, as another tab would.

import { act, cleanup, render, screen, waitFor } from '@testing-library/react';
import { createElement } from 'react';
import { afterEach, describe, expect, it } from 'vitest';
import { createTesseraClient, type TesseraClient } from '@tessera/client';
import { TesseraProvider, useSession } from '@tessera/react';
import { FakeTessera } from '../../client/test/fake-tessera.ts';

function Who() {
  const { session, status } = useSession();
  return createElement('p', { 'data-testid': 'who' }, `${status}${session ? ` ${session.sessionId}` : ''}`);
}

function LogoutButton() {
  const { logout } = useSession();
  return createElement('button', { onClick: () => void logout() }, 'log out');
}

const clients: TesseraClient[] = [];
afterEach(() => {
  cleanup();
  for (const c of clients.splice(0)) c.close();
  localStorage.clear();
});

function tab(server: FakeTessera): TesseraClient {
  const c = createTesseraClient({ baseUrl: 'https://auth.test', tenantId: 'acme', fetch: server.fetch, locks: null });
  clients.push(c);
  return c;
}

describe('useSession', () => {
  it('follows a login and a logout in another tab', async () => {
    expect(typeof BroadcastChannel).toBe('function');
    const server = new FakeTessera();
    const a = tab(server);
    const b = tab(server);
    render(createElement(TesseraProvider, { client: a }, createElement(Who)));
    await waitFor(() => expect(screen.getByTestId('who').textContent).toBe('anonymous'));

    const session = await b.login({ email: 'ada@example.com', password: 'pw' });
    await waitFor(() => expect(screen.getByTestId('who').textContent).toBe(`authenticated ${session.sessionId}`));
    expect(localStorage.getItem('tessera:acme')).toContain(session.sessionId);

    await b.logout();
    await waitFor(() => expect(screen.getByTestId('who').textContent).toBe('anonymous'));
    expect(a.getSession()).toBeNull();
  });

  it("the hook's logout in this tab ends the other tab's session too, and a session already stored shows at once", async () => {
    const server = new FakeTessera();
    const b = tab(server);
    const session = await b.login({ email: 'ada@example.com', password: 'pw' });
    const a = tab(server); // opened after the login: finds the stored session
    render(createElement(TesseraProvider, { client: a }, createElement(Who), createElement(LogoutButton)));
    await waitFor(() => expect(screen.getByTestId('who').textContent).toBe(`authenticated ${session.sessionId}`));
    await act(async () => screen.getByRole('button').click());
    await waitFor(() => expect(screen.getByTestId('who').textContent).toBe('anonymous'));
    await waitFor(() => expect(b.getSession()).toBeNull());
    expect(server.count('/api/v1/auth/logout')).toBe(1);
  });

  it('outside a provider it says so', () => {
    expect(() => render(createElement(Who))).toThrow(/TesseraProvider/);
  });
});
