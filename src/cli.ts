// The `tessera` command: start | users add | tenants put | export | import | bank-simulator | help.
// Configuration errors print one line naming the variable and exit with code 2.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { hashPassword, MIN_PASSWORD_LENGTH } from './auth/password.ts';
import { ConfigError, loadConfig } from './config/config.ts';
import { execWithStartFlags } from './config/node-flags.ts';
import { TesseraError } from './domain/errors.ts';
import { buildTenant, PLATFORM_TENANT, PROFILES, type Profile } from './domain/tenant.ts';
import { ensurePlatformTenant, openCommandStore, serverSecretOf, withStore } from './runtime.ts';
import { normaliseEmail } from './domain/user.ts';
import { SESSION_STATUSES, type SessionStatus } from './domain/session.ts';
import { sessionJson } from './http/session-json.ts';
import { KeyRing } from './tokens/key-ring.ts';
import { WrongServerSecret } from './tokens/sealing.ts';
import { createLogger, startServer } from './server.ts';
import type { Logger } from 'pino';
import { LOGIN_USAGE, loginCommand } from './client/cli-login.ts';
import { migrateStore } from './store/migrate.ts';
import { AUDIT_USAGE, auditCommand } from './audit/audit-cli.ts';
import { TRANSFER_USAGE, transferCommand } from './flows/transfer-cli.ts';
import { startBankSimulator } from './bank-simulator/simulator.ts';
import { promoteReplica, PromoteRefused } from './store/redis/dr.ts';
import { pruneFunctions } from './store/redis/functions-prune.ts';

const USAGE = `Usage: tessera <command> [options]

Commands:
  start                          Serve Tessera (configuration from the environment; see README)
  tenants put <id> [--profile integration|production]
                                 Create or replace a tenant with the profile's defaults
  users add --tenant <id> --email <email> [--password-stdin] [--role <role>]... [--admin]
                                 Create a user (password read from stdin, or prompted for);
                                 --admin gives the role admin (with --tenant platform: a
                                 platform administrator)
  keys rotate                    Add a new JWT signing key; the old one keeps verifying
  backup <file>                  Copy the SQLite store to <file> while it serves (online backup API)
  restore <file> [--force]       Put a backup in place of the SQLite store (no server may run on it)
${TRANSFER_USAGE}
  migrate [--dry-run]            Bring the store's schema up to date (PostgreSQL, SQLite), or list
                                 what would be applied
  dr promote --to <redis url> [--from <redis url>] [--force] [--timeout-ms <n>]
                                 Switch to the second site: pause writes on the old primary
                                 (--from), wait until the replica (--to) has them, promote it,
                                 and fence the old one as its replica (docs/reliability.md)
  redis-functions prune [--url <redis url>] [--dry-run]
                                 Delete the Redis Function libraries of other Tessera releases
                                 (run it once every process is on this release)
  sessions list --tenant <id> [--user <id>] [--status active|revoked|expired]
                                 List sessions as JSON lines
${AUDIT_USAGE}
${LOGIN_USAGE}
  bank-simulator --port <n> [--host <addr>] [--tls-cert <pem file> --tls-key <pem file>
                 [--client-ca <pem file>]] [--public-url <origin>] [--test-control]
                                 Run the Berlin Group bank simulator (for the demo and tests)
  help                           This text

Exit codes: 0 ok, 1 failure, 2 bad configuration or usage.`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start();
    case 'tenants':
      return tenants(rest);
    case 'users':
      return users(rest);
    case 'keys':
      return keys(rest);
    case 'backup':
    case 'restore':
      return backupOrRestore(command, rest);
    case 'export':
    case 'import':
      return transfer(command, rest);
    case 'sessions':
      return sessions(rest);
    case 'dr':
      return dr(rest);
    case 'migrate':
      return migrateCommand(rest);
    case 'redis-functions':
      return redisFunctions(rest);
    case 'audit':
      return withStore(loadConfig(), (store) =>
        auditCommand(rest, store.audit, { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') }),
      );
    case 'bank-simulator':
      return bankSimulator(rest);
    case 'login':
      return loginCommand(rest, process.env, { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function dr(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'promote') throw new UsageError('usage: tessera dr promote --to <redis url> [--from <redis url>] [--force] [--timeout-ms <n>]');
  const { values } = parseArgs({
    args: rest,
    options: { to: { type: 'string' }, from: { type: 'string' }, force: { type: 'boolean' }, 'timeout-ms': { type: 'string' } },
  });
  if (values.to === undefined) throw new UsageError('dr promote needs --to <redis url of the replica>');
  const timeoutMs = Number(values['timeout-ms'] ?? '5000');
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000) throw new UsageError('--timeout-ms takes 100..600000');
  try {
    await promoteReplica({
      to: values.to,
      ...(values.from !== undefined ? { from: values.from } : {}),
      force: values.force === true,
      timeoutMs,
      log: (line) => process.stdout.write(line + '\n'),
    });
    return 0;
  } catch (err) {
    if (err instanceof PromoteRefused) {
      process.stderr.write(`tessera dr promote: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function bankSimulator(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'client-ca': { type: 'string' },
      'public-url': { type: 'string' },
      'test-control': { type: 'boolean' },
    },
  });
  const port = Number(values.port ?? 'x');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('bank-simulator needs --port <0..65535>');
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key come together');
  if (values['client-ca'] !== undefined && values['tls-cert'] === undefined) throw new UsageError('--client-ca needs --tls-cert and --tls-key');
  const tls =
    values['tls-cert'] !== undefined && values['tls-key'] !== undefined
      ? {
          cert: readFileSync(values['tls-cert'], 'utf8'),
          key: readFileSync(values['tls-key'], 'utf8'),
          ...(values['client-ca'] !== undefined ? { clientCa: readFileSync(values['client-ca'], 'utf8') } : {}),
        }
      : undefined;
  const sim = await startBankSimulator({
    port,
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(tls ? { tls } : {}),
    ...(values['public-url'] !== undefined ? { publicUrl: values['public-url'] } : {}),
    testControl: values['test-control'] === true,
  });
  process.stdout.write(`bank simulator listening on ${sim.url}\n`);
  const stop = () => void sim.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return new Promise<number>(() => {});
}

async function start(): Promise<number> {
  const config = loadConfig();
  // With the young generation's size, unless the operator gave one (src/config/node-flags.ts).
  // Where the process cannot replace itself it starts as it is, after a warn line in the log
  // the server then writes to.
  let log: Logger | undefined;
  execWithStartFlags(config.semiSpaceMb, { warn: (fields, msg) => (log ??= createLogger(config)).warn(fields, msg) });
  if (config.store.kind !== 'sqlite' && config.adminToken === null) {
    // On SQLite a credential is generated into the data folder; a shared store has no such place
    // that every server sees, so without a platform administrator in the store nobody could
    // create the first tenant.
    await withStore(config, async (store) => {
      const admins = await store.listUsers({ tenantId: PLATFORM_TENANT, limit: 1 });
      if (admins.items.length === 0) {
        throw new ConfigError(
          'TESSERA_ADMIN_TOKEN',
          `is required: the store has no platform administrator yet (set a random value of at least 32 characters, e.g. openssl rand -base64 32, or create one with tessera users add --tenant platform --admin)`,
        );
      }
    });
  }
  const server = await startServer(config, log !== undefined ? { logger: log } : {});
  let signals = 0;
  const shutdown = (reason: string) => {
    signals += 1;
    if (signals > 1) process.exit(130);
    server.app.log.info({ reason }, 'shutting down: readiness 503, finishing in-flight requests');
    // However long the steps take, the process ends within this bound.
    setTimeout(() => {
      server.app.log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownDelayMs + config.shutdownTimeoutMs + 5000);
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        server.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  watchLauncher(() => shutdown('launcher gone'));
  return new Promise<number>(() => {
    /* runs until a signal */
  });
}

/**
 * Started through npm (`npm start`, `npx tessera start`), Tessera runs under a shell that npm
 * spawned. npm passes SIGTERM to that shell, which dies without passing it on, and Tessera would
 * be re-parented and keep serving. So when the launcher goes away (the parent changes), Tessera
 * shuts down as if it had received SIGTERM. (`npm start` also `exec`s, so there the signal
 * arrives directly.) Started any other way — systemd, a container's PID 1, nohup — nothing is
 * watched.
 */
function watchLauncher(onGone: () => void): void {
  if (process.env.npm_lifecycle_event === undefined && process.env.npm_command === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone();
    }
  }, 200);
  timer.unref();
}

async function backupOrRestore(command: 'backup' | 'restore', args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { force: { type: 'boolean', default: false } } });
  const file = positionals[0];
  if (!file) throw new UsageError(`expected: tessera ${command} <file>`);
  const config = loadConfig();
  if (config.store.kind !== 'sqlite' || config.store.sqlitePath === null || config.store.sqlitePath === ':memory:') {
    throw new UsageError(`tessera ${command} works on a SQLite store file; back Redis up with its AOF/RDB files (docs/reliability.md)`);
  }
  const { backupSqlite, restoreSqlite } = await import('./store/sqlite/backup.ts');
  const target = resolvePath(file);
  const pages =
    command === 'backup'
      ? await backupSqlite(config.store.sqlitePath, target)
      : await restoreSqlite(target, config.store.sqlitePath, values.force);
  process.stdout.write(JSON.stringify({ [command === 'backup' ? 'backup' : 'restored']: command === 'backup' ? target : config.store.sqlitePath, pages }) + '\n');
  return 0;
}

async function redisFunctions(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'prune') throw new UsageError('usage: tessera redis-functions prune [--url <redis url>] [--dry-run]');
  const { values } = parseArgs({ args: rest, options: { 'dry-run': { type: 'boolean' }, url: { type: 'string' } } });
  const dryRun = values['dry-run'] === true;
  // The store's URL alone: the rest of the server's configuration is not needed here.
  const url = values.url ?? process.env.TESSERA_STORE?.trim() ?? '';
  if (!/^(redis|rediss|redis-sentinel|redis-cluster):\/\//.test(url)) throw new UsageError('redis-functions prune needs a Redis store: --url <redis url>, or TESSERA_STORE');
  const report = await pruneFunctions(url, { dryRun });
  for (const name of report.deleted) process.stdout.write(`${dryRun ? 'would delete' : 'deleted'} ${name}\n`);
  process.stdout.write(`${report.deleted.length} ${dryRun ? 'to delete' : 'deleted'}, ${report.kept.length} of this release kept\n`);
  return 0;
}

async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'dry-run': { type: 'boolean' } } });
  const dryRun = values['dry-run'] === true;
  const report = await migrateStore(loadConfig(), dryRun);
  if (report.from === null) {
    process.stdout.write(`${report.store}: no schema to migrate\n`);
    return 0;
  }
  process.stdout.write(`${report.store}: schema version ${report.from}${dryRun ? '' : ` -> ${report.to}`}\n`);
  for (const m of report.migrations) process.stdout.write(`${dryRun ? 'would apply' : 'applied'} ${m.version}: ${m.description}\n`);
  if (report.migrations.length === 0) process.stdout.write('up to date\n');
  return 0;
}

async function tenants(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'put') throw new UsageError('expected: tessera tenants put <id> [--profile integration|production]');
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { profile: { type: 'string' } } });
  const id = positionals[0];
  if (!id || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) throw new UsageError('a tenant id (letters, digits, . _ -) is required');
  const profile = (values.profile ?? 'production') as Profile;
  if (!PROFILES.includes(profile)) throw new UsageError(`--profile must be one of ${PROFILES.join(', ')}`);
  return withStore(loadConfig(), async (store) => {
    const previous = await store.getTenant(id);
    const tenant = await store.putTenant(buildTenant(id, { profile }, Date.now(), previous ?? undefined));
    process.stdout.write(JSON.stringify({ id: tenant.id, profile: tenant.profile }) + '\n');
    return 0;
  });
}

async function users(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'add') throw new UsageError('expected: tessera users add --tenant <id> --email <email>');
  const { values } = parseArgs({
    args: rest,
    options: {
      tenant: { type: 'string' },
      email: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
      role: { type: 'string', multiple: true },
      admin: { type: 'boolean', default: false },
    },
  });
  if (!values.tenant) throw new UsageError('--tenant is required');
  const roles = [...new Set([...(values.role ?? []), ...(values.admin ? ['admin'] : [])])];
  if (!values.email || !/^[^\s@]+@[^\s@]+$/.test(values.email)) throw new UsageError('--email must be an email address');
  const password = await readPassword(values['password-stdin']);
  if (password.length < MIN_PASSWORD_LENGTH) throw new UsageError(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  const tenantId = values.tenant;
  const email = values.email;
  return withStore(loadConfig(), async (store) => {
    // The reserved tenant may not exist yet when the first platform administrator is made before the first start.
    if (tenantId === PLATFORM_TENANT) await ensurePlatformTenant(store, Date.now());
    if (!(await store.getTenant(tenantId))) {
      throw new UsageError(`no tenant "${tenantId}"; create it with: tessera tenants put ${tenantId}`);
    }
    const now = Date.now();
    const user = await store.createUser({
      id: randomUUID(),
      tenantId,
      email: normaliseEmail(email),
      passwordHash: await hashPassword(password),
      roles,
      createdAt: now,
      updatedAt: now,
    });
    process.stdout.write(JSON.stringify({ id: user.id, tenantId: user.tenantId, email: user.email, roles: user.roles }) + '\n');
    return 0;
  });
}

async function transfer(command: 'export' | 'import', args: string[]): Promise<number> {
  const config = loadConfig();
  const serverSecret = serverSecretOf(config);
  return transferCommand(command, args, { serverSecret, open: () => openCommandStore(config) }, { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') });
}

async function keys(args: string[]): Promise<number> {
  if (args[0] !== 'rotate') throw new UsageError('expected: tessera keys rotate');
  const config = loadConfig();
  return withStore(config, async (store) => {
    const secret = serverSecretOf(config);
    const ring = new KeyRing(store, secret);
    await ring.load(Date.now()); // creates the first key if there is none, checks the secret
    const { kid, retired } = await KeyRing.rotate(store, secret, Date.now());
    process.stdout.write(JSON.stringify({ signingKid: kid, retired }) + '\n');
    return 0;
  });
}

async function sessions(args: string[]): Promise<number> {
  if (args[0] !== 'list') throw new UsageError('expected: tessera sessions list --tenant <id>');
  const { values } = parseArgs({
    args: args.slice(1),
    options: { tenant: { type: 'string' }, user: { type: 'string' }, status: { type: 'string' } },
  });
  if (!values.tenant) throw new UsageError('--tenant is required');
  const status = values.status as SessionStatus | undefined;
  if (status !== undefined && !SESSION_STATUSES.includes(status)) throw new UsageError(`--status must be one of ${SESSION_STATUSES.join(', ')}`);
  const tenantId = values.tenant;
  return withStore(loadConfig(), async (store) => {
    let cursor: string | null = null;
    const now = Date.now();
    do {
      const page = await store.listSessions({
        tenantId,
        ...(values.user ? { userId: values.user } : {}),
        ...(status ? { status } : {}),
        now,
        cursor,
        limit: 500,
      });
      for (const s of page.items) process.stdout.write(JSON.stringify(sessionJson(s, now)) + '\n');
      cursor = page.nextCursor;
    } while (cursor !== null);
    return 0;
  });
}

async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin || !process.stdin.isTTY) {
    return readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  }
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  try {
    return await rl.question('Password: ');
  } finally {
    rl.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError || (err instanceof Error && err.name === 'InvalidPostgresUrl')) {
      process.stderr.write(`tessera: configuration error: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof WrongServerSecret) {
      process.stderr.write(`tessera: configuration error: ${err.variable}: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof UsageError || (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`tessera: ${err.message}\n\n${USAGE}\n`);
      process.exitCode = 2;
    } else if (err instanceof TesseraError) {
      process.stderr.write(`tessera: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`tessera: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
