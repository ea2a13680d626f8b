// Parses the TESSERA_STORE URLs of the Redis family into one typed shape. node-redis parses
// plain `redis://` URLs itself, but not the Sentinel and Cluster forms (several hosts separated
// by commas, which WHATWG URL rejects), so the whole family is parsed here, once, with errors
// that say what is wrong and never echo a password.
//
//   redis://[user:pass@]host[:port][/db]          standalone
//   rediss://[user:pass@]host[:port][/db]         standalone over TLS
//   redis-sentinel://[user:pass@]h1:p1,h2:p2/<masterName>
//   redis-cluster://[user:pass@]h1:p1,h2:p2       seed nodes of a cluster
//
// Credentials in a Sentinel URL are those of the data nodes (master and replicas); the Sentinels
// themselves are contacted without credentials.

export interface RedisHost {
  host: string;
  port: number;
}

export type RedisTarget =
  | {
      mode: 'standalone';
      tls: boolean;
      host: RedisHost;
      username?: string;
      password?: string;
      database: number;
    }
  | {
      mode: 'sentinel';
      sentinels: RedisHost[];
      masterName: string;
      username?: string;
      password?: string;
    }
  | {
      mode: 'cluster';
      seeds: RedisHost[];
      username?: string;
      password?: string;
    };

const DEFAULT_PORT = { standalone: 6379, sentinel: 26379, cluster: 6379 } as const;

/** Thrown for a store URL that cannot be used; the message names the problem. */
export class InvalidRedisUrl extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRedisUrl';
  }
}

/** What a URL looks like in messages: the password replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z-]+:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
}

export function parseRedisUrl(url: string): RedisTarget {
  const shown = redactUrl(url);
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
  if (!m) throw new InvalidRedisUrl(`store URL "${shown}" has no scheme (expected redis://, rediss://, redis-sentinel:// or redis-cluster://)`);
  const scheme = (m[1] as string).toLowerCase();
  let rest = m[2] as string;

  if (rest.includes('?') || rest.includes('#')) {
    throw new InvalidRedisUrl(`store URL "${shown}": query strings and fragments are not supported`);
  }

  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    try {
      if (colon === -1) {
        // `redis://secret@host` is the old requirepass form: a password without a user.
        password = decodeURIComponent(userinfo);
      } else {
        const u = decodeURIComponent(userinfo.slice(0, colon));
        if (u !== '') username = u;
        password = decodeURIComponent(userinfo.slice(colon + 1));
      }
    } catch {
      throw new InvalidRedisUrl(`store URL "${shown}": the user or password is not valid percent-encoding`);
    }
    if (password === '') password = undefined;
  }

  const slash = rest.indexOf('/');
  const hostPart = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  const creds = { ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password } : {}) };

  switch (scheme) {
    case 'redis':
    case 'rediss': {
      const hosts = parseHosts(hostPart, DEFAULT_PORT.standalone, shown);
      if (hosts.length !== 1) {
        throw new InvalidRedisUrl(
          `store URL "${shown}": ${scheme}:// takes exactly one host; use redis-cluster:// or redis-sentinel:// for several`,
        );
      }
      let database = 0;
      if (path !== '') {
        if (!/^\d{1,5}$/.test(path)) throw new InvalidRedisUrl(`store URL "${shown}": the database "/${path}" is not a number`);
        database = Number(path);
      }
      return { mode: 'standalone', tls: scheme === 'rediss', host: hosts[0] as RedisHost, database, ...creds };
    }
    case 'redis-sentinel': {
      const sentinels = parseHosts(hostPart, DEFAULT_PORT.sentinel, shown);
      const masterName = path.replace(/\/$/, '');
      if (masterName === '') {
        throw new InvalidRedisUrl(`store URL "${shown}": redis-sentinel:// needs the master name as its path (redis-sentinel://h1:26379,h2:26379/mymaster)`);
      }
      if (masterName.includes('/')) throw new InvalidRedisUrl(`store URL "${shown}": the master name must not contain "/"`);
      return { mode: 'sentinel', sentinels, masterName, ...creds };
    }
    case 'redis-cluster': {
      const seeds = parseHosts(hostPart, DEFAULT_PORT.cluster, shown);
      if (path.replace(/\/$/, '') !== '') {
        throw new InvalidRedisUrl(`store URL "${shown}": redis-cluster:// takes no path (a cluster has only database 0)`);
      }
      return { mode: 'cluster', seeds, ...creds };
    }
    default:
      throw new InvalidRedisUrl(
        `store URL "${shown}": unknown scheme "${scheme}:" (expected redis://, rediss://, redis-sentinel:// or redis-cluster://)`,
      );
  }
}

function parseHosts(list: string, defaultPort: number, shown: string): RedisHost[] {
  if (list === '') throw new InvalidRedisUrl(`store URL "${shown}" names no host`);
  return list.split(',').map((item) => {
    let host: string;
    let portText: string | undefined;
    const v6 = /^\[([0-9a-fA-F:.]+)\](?::(.*))?$/.exec(item);
    if (v6) {
      host = v6[1] as string;
      portText = v6[2];
    } else {
      const parts = item.split(':');
      if (parts.length > 2) throw new InvalidRedisUrl(`store URL "${shown}": "${item}" is not host:port (write IPv6 addresses in brackets)`);
      host = parts[0] as string;
      portText = parts[1];
    }
    if (host === '') throw new InvalidRedisUrl(`store URL "${shown}": an entry of the host list is empty`);
    if (!/^[A-Za-z0-9._:-]+$/.test(host)) throw new InvalidRedisUrl(`store URL "${shown}": "${host}" is not a host name`);
    let port = defaultPort;
    if (portText !== undefined) {
      if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
        throw new InvalidRedisUrl(`store URL "${shown}": port "${portText}" of "${host}" is not a number between 1 and 65535`);
      }
      port = Number(portText);
    }
    return { host, port };
  });
}
