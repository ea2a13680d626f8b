// Where Tessera may connect to on behalf of a tenant: identity providers (issuer, endpoints, JWKS),
// applications' back-channel logout URIs, and any later outbound target (bank APIs). A tenant
// administrator chooses these URLs, so without a rule Tessera would be a proxy into the
// operator's network (server-side request forgery): loopback services, private ranges, cloud
// metadata at 169.254.169.254.
//
// The rule, applied twice:
//  - when a URL is registered (`check`): the scheme (https; plain http only for loopback hosts
//    with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1) and every address its host resolves to now;
//  - on every connection (`fetch`, `dispatcher`): the address actually connected to, after the
//    resolution made for that connection, so a name that resolved to a public address at
//    registration and to 127.0.0.1 later (DNS rebinding) is refused. Redirects are never followed.
// Refused: loopback, unspecified, private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7),
// link-local (169.254/16, fe80::/10), multicast, reserved and documentation ranges, IPv4-mapped
// and other IPv4-embedding IPv6 forms (::ffff:0:0/96, ::/96, 64:ff9b::/96, 2002::/16, Teredo).
// Allowed anyway: host names, addresses and CIDR ranges listed in TESSERA_OUTBOUND_ALLOW, and
// loopback addresses when TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1 (development and tests).
//
// What failed is never told to the tenant beyond "could not reach the provider" (UNREACHABLE):
// a connection refused, a TLS mismatch or a timeout would otherwise make a port scanner.

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, buildConnector, fetch as undiciFetch, type Dispatcher } from 'undici';
import { BadRequest } from '../domain/errors.ts';

/** The only thing a tenant learns about a failed outbound call. */
export const UNREACHABLE = 'Could not reach the provider.';

/** Milliseconds to establish one outbound connection (TCP and TLS). */
const CONNECT_TIMEOUT_MS = 10_000;

export type LookupFn = (hostname: string) => Promise<LookupAddress[]>;

/** Thrown (as the cause of a fetch failure) when a connection would reach a refused address. */
export class OutboundRefused extends Error {
  readonly code = 'outbound_refused';
}

// Two lists: node's BlockList matches an IPv4 address against IPv6 rules in its IPv4-mapped form,
// so one list holding ::ffff:0:0/96 would refuse every IPv4 address.
const NON_PUBLIC_V4 = new BlockList();
const NON_PUBLIC_V6 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network", including 0.0.0.0
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  NON_PUBLIC_V4.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 96], // unspecified, ::1 and the IPv4-compatible form ::a.b.c.d
  ['::ffff:0:0', 96], // IPv4-mapped
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48],
  ['100::', 64], // discard
  ['2001::', 32], // Teredo
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  NON_PUBLIC_V6.addSubnet(net, bits, 'ipv6');
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

function family(ip: string): 'ipv4' | 'ipv6' | null {
  const f = isIP(ip);
  return f === 4 ? 'ipv4' : f === 6 ? 'ipv6' : null;
}

function bare(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

/** Whether `ip` is an address on the public internet (none of the ranges above). */
export function isPublicAddress(ip: string): boolean {
  const a = bare(ip);
  const f = family(a);
  if (f === null) return false;
  return f === 'ipv4' ? !NON_PUBLIC_V4.check(a, 'ipv4') : !NON_PUBLIC_V6.check(a, 'ipv6');
}

function isLoopbackAddress(ip: string): boolean {
  const f = family(ip);
  return f !== null && LOOPBACK.check(ip, f);
}

/** 127.0.0.0/8, ::1 and localhost (which resolves to them; RFC 6761 6.3). */
function isLoopbackName(hostname: string): boolean {
  const h = bare(hostname);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  return isLoopbackAddress(h);
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/**
 * One entry of TESSERA_OUTBOUND_ALLOW: a host name, an IP address or a CIDR range; null when it is
 * none of these (the configuration names the variable).
 */
export function parseAllowEntry(entry: string): { kind: 'name'; name: string } | { kind: 'net'; net: string; bits: number; family: 'ipv4' | 'ipv6' } | null {
  const [addr = '', bitsText, extra] = entry.trim().split('/');
  if (extra !== undefined) return null;
  const f = family(bare(addr));
  if (f !== null) {
    const max = f === 'ipv4' ? 32 : 128;
    if (bitsText === undefined) return { kind: 'net', net: bare(addr), bits: max, family: f };
    if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) return null;
    return { kind: 'net', net: bare(addr), bits: Number(bitsText), family: f };
  }
  if (bitsText !== undefined || !HOST_NAME.test(addr)) return null;
  return { kind: 'name', name: addr.toLowerCase().replace(/\.$/, '') };
}

export interface OutboundOptions {
  /** TESSERA_OUTBOUND_ALLOW entries (already validated by the configuration). */
  allow: readonly string[];
  /** TESSERA_DEV_ALLOW_HTTP_LOOPBACK: plain HTTP to loopback hosts, and loopback addresses at all. */
  devAllowHttpLoopback: boolean;
  /** Name resolution (tests give their own to play DNS rebinding); default: the system resolver. */
  lookup?: LookupFn;
}

export interface OutboundPolicy {
  readonly devAllowHttpLoopback: boolean;
  /**
   * Registration: the URL's scheme and the addresses its host resolves to now. Throws
   * BadRequest `insecure_url` (scheme) or `outbound_url_refused` (address), naming `field`. A
   * name that does not resolve now passes (nothing is connected to; `fetch` checks again).
   */
  check(value: string, field: string): Promise<URL>;
  /** Why Tessera would not connect to `ip` for `hostname`, or null when it may. */
  refusal(ip: string, hostname: string): string | null;
  /**
   * Connect time: fetch through `dispatcher`, redirects not followed. Fails (TypeError, cause
   * OutboundRefused) when the scheme or an address is refused.
   */
  fetch(input: string | URL, init?: RequestInit): Promise<Response>;
  /** An undici dispatcher whose every connection is checked (for clients that take one). */
  readonly dispatcher: Dispatcher;
  close(): Promise<void>;
}

const systemLookup: LookupFn = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))));

export function createOutboundPolicy(opts: OutboundOptions): OutboundPolicy {
  const names = new Set<string>();
  const allowed = new BlockList();
  for (const raw of opts.allow) {
    const e = parseAllowEntry(raw);
    if (e === null) throw new Error(`TESSERA_OUTBOUND_ALLOW: "${raw}" is not a host name, IP address or CIDR range`);
    if (e.kind === 'name') names.add(e.name);
    else allowed.addSubnet(e.net, e.bits, e.family);
  }
  const resolveName = opts.lookup ?? systemLookup;
  const dev = opts.devAllowHttpLoopback;

  const nameAllowed = (hostname: string) => names.has(bare(hostname).replace(/\.$/, ''));

  function refusal(ip: string, hostname: string): string | null {
    const a = bare(ip);
    const f = family(a);
    if (f === null) return `"${a}" is not an IP address`;
    if (nameAllowed(hostname) || allowed.check(a, f)) return null;
    if (dev && isLoopbackAddress(a)) return null;
    if (!isPublicAddress(a)) return `${bare(hostname)} resolves to ${a}, which is not a public address`;
    return null;
  }

  function schemeRefusal(url: URL): string | null {
    if (url.username !== '' || url.password !== '') return 'must not carry credentials';
    if (url.protocol === 'https:') return null;
    if (url.protocol !== 'http:') return 'must be an https:// URL';
    if (!isLoopbackName(url.hostname)) return `must be an https:// URL (plain HTTP is never allowed for ${url.hostname})`;
    if (!dev) return 'is plain HTTP on a loopback address; allowed only in development with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1';
    return null;
  }

  async function addressesOf(hostname: string): Promise<string[]> {
    const h = bare(hostname);
    if (family(h) !== null) return [h];
    return (await resolveName(h)).map((a) => a.address);
  }

  // The connector: IP-literal hosts are checked here (net.connect skips the lookup for them);
  // names are checked in the lookup, on the addresses this very connection will use.
  const guardedLookup = (
    hostname: string,
    options: { all?: boolean },
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    resolveName(hostname).then(
      (addresses) => {
        for (const a of addresses) {
          const why = refusal(a.address, hostname);
          if (why !== null) return callback(new OutboundRefused(why), options.all ? [] : '');
        }
        if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), options.all ? [] : '');
        if (options.all) return callback(null, addresses);
        const first = addresses[0] as LookupAddress;
        return callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, options.all ? [] : ''),
    );
  };
  const base = buildConnector({ timeout: CONNECT_TIMEOUT_MS, lookup: guardedLookup });
  const connector: buildConnector.connector = (options, callback) => {
    const h = bare(options.hostname);
    if (family(h) !== null) {
      const why = refusal(h, h);
      if (why !== null) return callback(new OutboundRefused(why), null);
    }
    return base(options, callback);
  };
  const dispatcher = new Agent({ connect: connector });

  return {
    devAllowHttpLoopback: dev,
    refusal,
    dispatcher,
    async check(value, field) {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new BadRequest('insecure_url', `${field} "${value.slice(0, 200)}" is not a URL`, { field });
      }
      const scheme = schemeRefusal(url);
      if (scheme !== null) throw new BadRequest('insecure_url', `${field} ${scheme}`, { field });
      let addresses: string[];
      try {
        addresses = await addressesOf(url.hostname);
      } catch {
        return url; // not resolvable now: nothing to reach; checked again on every connection
      }
      for (const a of addresses) {
        if (refusal(a, url.hostname) !== null) {
          throw new BadRequest(
            'outbound_url_refused',
            `${field} points to a loopback, private, link-local or otherwise non-public address; Tessera does not connect there unless the operator allows the host in TESSERA_OUTBOUND_ALLOW.`,
            { field },
          );
        }
      }
      return url;
    },
    async fetch(input, init) {
      const url = new URL(String(input));
      const scheme = schemeRefusal(url);
      if (scheme !== null) throw new TypeError('fetch failed', { cause: new OutboundRefused(`the URL ${scheme}`) });
      const r = await undiciFetch(url, { ...(init as object), redirect: 'manual', dispatcher });
      return r;
    },
    close: () => dispatcher.close(),
  };
}

/** Whether an error from `fetch` (or a client using it) is a refusal by this policy. */
export function isOutboundRefusal(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof OutboundRefused) return true;
  }
  return false;
}
