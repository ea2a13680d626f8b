// Preloaded (`node --import`) by bench/post-shell.ts into a `tessera start` of the checkout named
// by POST_SHELL_ROOT: the two operations below the POST routes it measures answer constants —
// `refreshTokenPair` a fixed token pair, `redeemSsoToken` the same pair in token mode — so that
// what the server spends on those routes is their HTTP shell alone. Each module keeps its other
// exports (the stub shadows the one export of its name). `tessera start` replaces itself with
// its Node flags added (src/config/node-flags.ts) and keeps this preload.

import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** What the stubbed operations answer (the shape of a real pair; the token texts' lengths too). */
export const PAIR = {
  expires_in: 900,
  token_type: 'Bearer',
  scope: 'openid',
  customerId: 'u-0123456789abcdef',
  tenantId: 'bench',
  userSessionToken: `eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.${'e'.repeat(260)}.${'s'.repeat(86)}`,
  refreshToken: 'r'.repeat(43),
  sessionId: 's'.repeat(22),
};

const root = process.env.POST_SHELL_ROOT;
if (root !== undefined) {
  const stubs: Record<string, string> = {
    [pathToFileURL(join(root, 'src/sessions/app-sessions.ts')).href]: `export async function refreshTokenPair() { return ${JSON.stringify(PAIR)}; }`,
    [pathToFileURL(join(root, 'src/flows/sso/redeem-token.ts')).href]: `export async function redeemSsoToken() { return { mode: 'token', pair: ${JSON.stringify(PAIR)} }; }`,
  };
  registerHooks({
    load(url, context, nextLoad) {
      const stub = stubs[url];
      if (stub !== undefined) return { format: 'module', source: `export * from ${JSON.stringify(`${url}?real`)};\n${stub}\n`, shortCircuit: true };
      return nextLoad(url, context);
    },
  });
}
