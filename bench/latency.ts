// The load generators' latency figures (bench/load.ts, bench/load-server.ts): every 2xx
// response's latency kept as autocannon measured it (milliseconds as a float, from its hrtime),
// and p50/p99 taken from them — not autocannon's own percentiles, which come from a histogram of
// whole milliseconds (a response of 2.9 ms counts as 2). At the check's latencies (1–7 ms) that
// truncation could decide goal 1's "p99 ≤ 2× hello world's" by itself: it takes up to a
// millisecond off each side, a larger share of the smaller figure, hello world's — 2.9 vs 5.9 ms
// (2.03×) came out as 2 vs 5 (2.5×), 2.0 vs 4.9 ms (2.45×) as 2 vs 4 (2.0×). Every server's
// figures go through here, so hello world and Tessera get the same method.

/** The response events of an autocannon instance (it is an event emitter). */
interface Emitter {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, ms: number) => void): unknown;
}

export class Latencies {
  #values = new Float64Array(1 << 16);
  #n = 0;

  /**
   * Keeps the latency of every 2xx response of `instance`. (autocannon's own histogram counts every
   * response, non-2xx too, unless `excludeErrorStats`; the rows print non-2xx beside these figures.)
   */
  static of(instance: Emitter): Latencies {
    const l = new Latencies();
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode >= 200 && statusCode < 300) l.add(ms);
    });
    return l;
  }

  add(ms: number): void {
    if (this.#n === this.#values.length) {
      const grown = new Float64Array(this.#n * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#n++] = ms;
  }

  get count(): number {
    return this.#n;
  }

  /**
   * p50 and p99 in milliseconds to two decimals: the nearest-rank percentile (the smallest value
   * at or above which lie no more than 1 − p of the values), 0 when there are none.
   */
  percentiles(): { p50: number; p99: number } {
    const sorted = this.#values.slice(0, this.#n).sort();
    const at = (p: number) => (this.#n === 0 ? 0 : Math.round((sorted[Math.min(this.#n - 1, Math.ceil(p * this.#n) - 1)] as number) * 100) / 100);
    return { p50: at(0.5), p99: at(0.99) };
  }
}
