// Shared by the load generators (bench/load.ts, load-refresh.ts, load-sso.ts): an error that no
// request's own handler caught — a connection reset between two requests, a socket error after a
// response — is counted with the run's errors instead of ending the process, so a run reports its
// errors in its table rather than dying. The first one is kept for the report.

export const stray = { count: 0, first: null as string | null };

for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (err: unknown) => {
    stray.count++;
    stray.first ??= err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err);
  });
}

/** Prints the figures line (the last line of stdout, read by bench/run.ts) and any stray error. */
export function report(figures: { requests: number; rps: number; p50: number; p99: number; non2xx: number; errors: number; timeouts: number }, extra: Record<string, unknown> = {}): void {
  if (stray.first !== null) process.stderr.write(`${stray.count} error(s) outside a request, counted as errors; the first: ${stray.first}\n`);
  process.stdout.write(JSON.stringify({ ...figures, errors: figures.errors + stray.count, ...extra }) + '\n');
}
