// node-postgres vs postgres.js on the PostgreSQL adapter itself (the same adapter code, the driver
// interface of src/store/postgres/driver.ts): the session check (getSessionByHandle, the one
// statement a cache miss costs) at CONNECTIONS concurrent callers for SECONDS, then the whole
// PostgreSQL conformance suite on each driver (wall time, tests passed/failed). Each run on a
// database of its own, dropped afterwards. Prints a Markdown table.
// argv[2]: JSON { server: "postgres://postgres@127.0.0.1:5432", seconds, connections, suite: bool }

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { hashSecret, newSecret } from '../src/domain/secrets.ts';
import { issueSession } from '../src/domain/session.ts';
import type { PgDriver } from '../src/store/postgres/driver.ts';
import { openPgDriver } from '../src/store/postgres/pg-driver.ts';
import { openPostgresStore } from '../src/store/postgres/postgres-store.ts';
import { parsePostgresUrl } from '../src/store/postgres/url.ts';
import { openPostgresJsDriver } from '../test/support/postgresjs-driver.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const o = JSON.parse(process.argv[2] ?? '{}') as { server?: string; seconds?: number; connections?: number; suite?: boolean; rounds?: number };
const server = o.server ?? 'postgres://postgres@127.0.0.1:5432';
const SECONDS = o.seconds ?? 5;
const CONNECTIONS = o.connections ?? 50;
const POOL = 10;

function dbUrl(name: string): string {
  const u = new URL(server);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl('postgres') });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function check(name: string, open: (url: string) => Promise<PgDriver>): Promise<string> {
  const db = `tessera_bench_${randomBytes(5).toString('hex')}`;
  await admin(`CREATE DATABASE ${db}`);
  try {
    const driver = await open(dbUrl(db));
    const store = await openPostgresStore(dbUrl(db), { driver });
    try {
      const now = Date.now();
      const handles: string[] = [];
      // Stored 20 at a time (the pool has 10 connections), in the order of i.
      for (let i = 0; i < 1000; i += 20) {
        const made = await Promise.all(
          Array.from({ length: 20 }, async (_, j) => {
            const { session } = issueSession(
              { tenantId: 'bench', userId: `u${i + j}`, kind: 'app', lifetime: { idle: 3600, absolute: 3600 }, authMethod: 'password', data: { mode: 'token' } },
              now,
            );
            await store.createSession(session, now);
            await store.addRefreshToken({ tokenHash: hashSecret(newSecret()), sessionHandle: session.handle, tenantId: 'bench', userId: `u${i + j}`, createdAt: now, rotatedAt: null, successorHash: null });
            return session.handle;
          }),
        );
        handles.push(...made);
      }
      // warm-up: every pooled connection prepares the statement
      await Promise.all(handles.slice(0, 100).map((h) => store.getSessionByHandle(h)));
      const lat: number[] = [];
      let ops = 0;
      const end = performance.now() + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async (_, w) => {
          let i = w;
          while (performance.now() < end) {
            const t0 = performance.now();
            const s = await store.getSessionByHandle(handles[i++ % handles.length] as string);
            lat.push(performance.now() - t0);
            if (s === null) throw new Error('missing session');
            ops++;
          }
        }),
      );
      return `| ${name} | ${Math.round(ops / SECONDS).toLocaleString('en')} | ${percentile(lat, 50).toFixed(2)} | ${percentile(lat, 99).toFixed(2)} |`;
    } finally {
      await store.close();
    }
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
}

function suite(name: string, env: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-pgbench-'));
  const report = join(dir, 'report.json');
  const t0 = performance.now();
  // vitest on this very Node (the project's Node 24), whatever `node` is first on PATH.
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', 'test/store/matrix-postgres.test.ts', '--reporter=json', `--outputFile=${report}`], {
    cwd: ROOT,
    env: { ...process.env, ...env, TESSERA_TEST_POSTGRES_URL: server, TESSERA_REQUIRE_POSTGRES: '1' },
    encoding: 'utf8',
    timeout: 20 * 60 * 1000,
  });
  const seconds = (performance.now() - t0) / 1000;
  let counts = { passed: 0, failed: -1 };
  try {
    const j = JSON.parse(readFileSync(report, 'utf8')) as { numPassedTests: number; numFailedTests: number };
    counts = { passed: j.numPassedTests, failed: j.numFailedTests };
  } catch {
    // no report: counted as failed (-1)
  }
  const { passed, failed } = counts;
  rmSync(dir, { recursive: true, force: true });
  return `| ${name} | ${seconds.toFixed(1)} s | ${passed} | ${failed}${r.status !== 0 && failed === 0 ? ' (exit ' + String(r.status) + ')' : ''} |`;
}

const opts = { max: POOL, statementTimeoutMs: 5000 };
console.log(`\n### PostgreSQL drivers on the same adapter\n\nThe session check (getSessionByHandle, 1,000 sessions stored), ${CONNECTIONS} concurrent callers in one process, pool of ${POOL}, ${SECONDS} s each:\n`);
console.log('| driver | checks/s | p50 ms | p99 ms |\n|---|---:|---:|---:|');
for (let round = 0; round < (o.rounds ?? 2); round++) {
  console.log(await check(`node-postgres (pg)${round ? ' again' : ''}`, (url) => openPgDriver(parsePostgresUrl(url), opts)));
  console.log(await check(`postgres.js${round ? ' again' : ''}`, (url) => openPostgresJsDriver(parsePostgresUrl(url), opts)));
}
if (o.suite !== false) {
  console.log('\nThe PostgreSQL conformance suite (test/store/matrix-postgres.test.ts, every suite of the store port) on each driver:\n');
  console.log('| driver | wall time | passed | failed |\n|---|---:|---:|---:|');
  console.log(suite('node-postgres (pg)', {}));
  console.log(suite('postgres.js', { TESSERA_TEST_PG_DRIVER: 'postgres.js' }));
}
