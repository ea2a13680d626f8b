// Debian's Chromium for browser tests, through playwright-core (no browser download: the
// package's own browsers are never installed; `npx playwright install` is not used).
//
// Skip-or-fail rule, as for Redis: without /usr/bin/chromium (or TESSERA_CHROMIUM) the browser
// tests SKIP — unless TESSERA_REQUIRE_BROWSER=1 (CI), in which case they FAIL.

import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.TESSERA_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** true: skip the browser tests (and say why once). Throws when TESSERA_REQUIRE_BROWSER=1. */
export function skipWithoutBrowser(): boolean {
  if (existsSync(CHROMIUM_PATH)) return false;
  const reason = `${CHROMIUM_PATH} is not installed (apt-get install chromium)`;
  if (process.env.TESSERA_REQUIRE_BROWSER === '1') {
    throw new Error(`A browser is required (TESSERA_REQUIRE_BROWSER=1) but ${reason}`);
  }
  process.stderr.write(`[tessera tests] skipping browser tests: ${reason}\n`);
  return true;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** The page's text, for assertions and for messages when something unexpected shows. */
export async function pageText(page: Page): Promise<string> {
  return (await page.textContent('body').catch(() => null)) ?? '';
}
