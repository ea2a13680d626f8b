// Parses a TESSERA_STORE URL of PostgreSQL into what the driver needs. The query parameters are
// libpq's (https://www.postgresql.org/docs/current/libpq-connect.html), with libpq's meaning:
//
//   postgres://[user[:password]@]host[:port][/dbname][?param=value&…]   (or postgresql://)
//
//   sslmode       disable (no TLS) | require (TLS, server not verified — unless sslrootcert is
//                 given, then as verify-ca) | verify-ca (chain checked against sslrootcert) |
//                 verify-full (chain and host name checked). `allow` and `prefer` are refused:
//                 they fall back to plain text without saying so. Absent: disable.
//   sslrootcert   PEM file of the CA(s) to trust; `system`: the system's CAs (implies verify-full)
//   sslcert, sslkey  client certificate and key (PEM files)
//   sslpassword   passphrase of sslkey
//   connect_timeout  seconds (default 5)
//   application_name
//   user, password, host, port, dbname  override the URL's parts, as in libpq
//
// Errors say what is wrong and never echo a password.

import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

export class InvalidPostgresUrl extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPostgresUrl';
  }
}

export type SslMode = 'disable' | 'require' | 'verify-ca' | 'verify-full';

export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  sslmode: SslMode;
  /** TLS options for node:tls; false without TLS. */
  ssl: false | ConnectionOptions;
  connectTimeoutMs: number;
  applicationName: string;
}

/** What a URL looks like in messages: the password replaced by `***`. */
export function redactPostgresUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, '$1***@').replace(/([?&](?:password|sslpassword)=)[^&]*/gi, '$1***');
}

const KNOWN = new Set([
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslpassword',
  'connect_timeout',
  'application_name',
  'user',
  'password',
  'host',
  'port',
  'dbname',
]);

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

export function parsePostgresUrl(url: string, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): PostgresTarget {
  const shown = redactPostgresUrl(url);
  if (!isPostgresUrl(url)) throw new InvalidPostgresUrl(`store URL "${shown}" is not postgres:// or postgresql://`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidPostgresUrl(`store URL "${shown}" is not a valid URL`);
  }
  const q = u.searchParams;
  for (const key of q.keys()) {
    if (!KNOWN.has(key)) throw new InvalidPostgresUrl(`store URL "${shown}": unknown parameter "${key}" (known: ${[...KNOWN].join(', ')})`);
  }
  const host = q.get('host') ?? (decodeURIComponent(u.hostname).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1');
  const portText = q.get('port') ?? (u.port || '5432');
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new InvalidPostgresUrl(`store URL "${shown}": port must be 1..65535`);
  }
  const database = q.get('dbname') ?? (decodeURIComponent(u.pathname.replace(/^\//, '')) || 'tessera');
  const user = q.get('user') ?? (decodeURIComponent(u.username) || 'postgres');
  const password = q.get('password') ?? (u.password === '' ? undefined : decodeURIComponent(u.password));

  const modeText = q.get('sslmode') ?? 'disable';
  if (modeText === 'allow' || modeText === 'prefer') {
    throw new InvalidPostgresUrl(
      `store URL "${shown}": sslmode=${modeText} falls back to plain text silently; use sslmode=disable, require, verify-ca or verify-full`,
    );
  }
  if (!['disable', 'require', 'verify-ca', 'verify-full'].includes(modeText)) {
    throw new InvalidPostgresUrl(`store URL "${shown}": sslmode must be disable, require, verify-ca or verify-full`);
  }
  let sslmode = modeText as SslMode;
  const rootcert = q.get('sslrootcert');
  const file = (name: string, path: string): string => {
    try {
      return readFile(path);
    } catch (err) {
      throw new InvalidPostgresUrl(`store URL "${shown}": cannot read ${name} "${path}" (${(err as Error).message})`);
    }
  };

  let ssl: false | ConnectionOptions = false;
  if (sslmode !== 'disable') {
    const tls: ConnectionOptions = { servername: host };
    if (rootcert === 'system') {
      // libpq: sslrootcert=system trusts the system's CAs and demands verify-full.
      sslmode = 'verify-full';
    } else if (rootcert !== null) {
      tls.ca = file('sslrootcert', rootcert);
    }
    if (sslmode === 'require' && rootcert === null) {
      tls.rejectUnauthorized = false;
    } else if (sslmode === 'require' || sslmode === 'verify-ca') {
      // libpq: require with a root certificate behaves as verify-ca — the chain, not the name.
      if (tls.ca === undefined) throw new InvalidPostgresUrl(`store URL "${shown}": sslmode=verify-ca needs sslrootcert`);
      tls.rejectUnauthorized = true;
      tls.checkServerIdentity = () => undefined;
    } else {
      tls.rejectUnauthorized = true;
    }
    const cert = q.get('sslcert');
    const key = q.get('sslkey');
    if ((cert === null) !== (key === null)) throw new InvalidPostgresUrl(`store URL "${shown}": sslcert and sslkey go together`);
    if (cert !== null && key !== null) {
      tls.cert = file('sslcert', cert);
      tls.key = file('sslkey', key);
      const pass = q.get('sslpassword');
      if (pass !== null) tls.passphrase = pass;
    }
    ssl = tls;
  } else if (q.has('sslrootcert') || q.has('sslcert') || q.has('sslkey')) {
    throw new InvalidPostgresUrl(`store URL "${shown}": certificate parameters need sslmode=require, verify-ca or verify-full`);
  }

  const timeoutText = q.get('connect_timeout') ?? '5';
  if (!/^\d{1,4}$/.test(timeoutText)) throw new InvalidPostgresUrl(`store URL "${shown}": connect_timeout is whole seconds`);
  // libpq: 0 means wait indefinitely; here a store that never answers must still end in a 503.
  const connectTimeoutMs = Math.max(1, Number(timeoutText) || 5) * 1000;

  return {
    host,
    port: Number(portText),
    database,
    user,
    ...(password === undefined ? {} : { password }),
    sslmode,
    ssl,
    connectTimeoutMs,
    applicationName: q.get('application_name') ?? 'tessera',
  };
}
