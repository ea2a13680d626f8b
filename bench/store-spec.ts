// TESSERA_STORE-style strings for the bench helpers, through the server's own parser.

import { loadConfig } from '../src/config/config.ts';
import type { Config } from '../src/config/config.ts';

export function parseStoreSpec(spec: string): Config['store'] {
  return loadConfig({ TESSERA_STORE: spec, COOKIE_SECRET_SIGN_KEY: 'x'.repeat(43) }, process.cwd()).store;
}
