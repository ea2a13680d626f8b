import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Latencies } from '../../bench/latency.ts';

// The benchmark's p50/p99 (bench/latency.ts): from every 2xx response's latency as autocannon
// measured it, not from autocannon's whole-millisecond histogram.
describe('bench latencies', () => {
  it('keeps fractions of a millisecond: 2.9 ms is 2.9, not 2', () => {
    const l = new Latencies();
    for (let i = 0; i < 100; i++) l.add(2.9);
    expect(l.percentiles()).toEqual({ p50: 2.9, p99: 2.9 });
  });

  it('takes nearest-rank percentiles', () => {
    const l = new Latencies();
    // 1.00, 1.01, …, 1.99 in a shuffled order: p50 is the 50th smallest, p99 the 99th.
    const xs = Array.from({ length: 100 }, (_, i) => 1 + i / 100);
    for (const x of [...xs].reverse()) l.add(x);
    expect(l.percentiles()).toEqual({ p50: 1.49, p99: 1.98 });
    // One more value: p99 of 101 values is the 100th smallest.
    l.add(5);
    expect(l.percentiles()).toEqual({ p50: 1.5, p99: 1.99 });
  });

  it('counts only 2xx responses of an autocannon instance, as autocannon does', () => {
    const instance = new EventEmitter();
    const l = Latencies.of(instance);
    instance.emit('response', {}, 200, 100, 1.25);
    instance.emit('response', {}, 204, 100, 3.5);
    instance.emit('response', {}, 401, 100, 50);
    instance.emit('response', {}, 500, 100, 60);
    expect(l.count).toBe(2);
    expect(l.percentiles()).toEqual({ p50: 1.25, p99: 3.5 });
  });

  it('grows past its first buffer and answers 0 when there is nothing', () => {
    expect(new Latencies().percentiles()).toEqual({ p50: 0, p99: 0 });
    const l = new Latencies();
    const n = 200_000;
    for (let i = 0; i < n; i++) l.add(i < n - 2_000 ? 1 : 10);
    expect(l.count).toBe(n);
    // 1 % of the values are 10 ms: p99 is the last 1 ms value, and one more slow one moves it.
    expect(l.percentiles()).toEqual({ p50: 1, p99: 1 });
    l.add(10);
    expect(l.percentiles().p99).toBe(10);
  });
});
