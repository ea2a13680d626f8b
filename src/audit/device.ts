// What a User-Agent says about the device, parsed with bowser (MIT): the readable `device` of
// session listings and the anomaly rules' device key come from this one parse.

import Bowser from 'bowser';

export interface DeviceInfo {
  /** Browser name and major version, e.g. "Firefox 133"; a non-browser client's product name. */
  browser: string | null;
  /** OS name, e.g. "macOS", "Android 15"; null when the agent names none. */
  os: string | null;
  /** desktop | mobile | tablet | tv | bot; `desktop` where the parser leaves it empty. */
  type: string;
}

const parsed = new Map<string, DeviceInfo & { browserName: string | null; osName: string | null }>();
const MAX_CACHED = 1000;

function parse(userAgent: string) {
  const hit = parsed.get(userAgent);
  if (hit) return hit;
  const r = Bowser.parse(userAgent);
  const productName = /^([A-Za-z][A-Za-z0-9._-]{0,40})/.exec(userAgent.trim())?.[1] ?? null;
  const browserName = r.browser.name || null;
  const major = r.browser.version?.split('.')[0];
  const browser = browserName !== null ? (major ? `${browserName} ${major}` : browserName) : productName;
  const osName = r.os.name || null;
  const osVersion = r.os.versionName ?? r.os.version;
  const os = osName === null ? null : osVersion && osName !== 'macOS' && osName !== 'Linux' ? `${osName} ${osVersion}` : osName;
  const out = {
    browser,
    os,
    type: r.platform.type && r.platform.type !== '' ? r.platform.type : 'desktop',
    browserName: browserName ?? productName,
    osName,
  };
  if (parsed.size >= MAX_CACHED) parsed.clear();
  parsed.set(userAgent, out);
  return out;
}

/** The readable device of a User-Agent, or null without one. */
export function deviceOf(userAgent: string | null | undefined): DeviceInfo | null {
  if (typeof userAgent !== 'string' || userAgent.trim() === '') return null;
  const { browser, os, type } = parse(userAgent);
  return { browser, os, type };
}

/** Keys recorded before bowser kept their short names, so known devices stay known. */
const FAMILY_ALIASES: Record<string, string> = { microsoftedge: 'edge', chromium: 'chrome' };

/**
 * A coarse device key: browser family and OS family, without versions, so a browser update is
 * not a new device (`firefox/linux`, `curl/other`).
 */
export function deviceKeyOf(userAgent: string | null | undefined): string | null {
  if (typeof userAgent !== 'string' || userAgent.trim() === '') return null;
  const { browserName, osName } = parse(userAgent);
  const slug = (s: string | null, fallback: string) => (s === null ? fallback : s.toLowerCase().replace(/[^a-z0-9]+/g, ''));
  const family = slug(browserName, 'unknown');
  return `${FAMILY_ALIASES[family] ?? family}/${slug(osName, 'other')}`;
}
