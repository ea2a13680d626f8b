import { describe, expect, it } from 'vitest';
import { coreBusy, describePlacement, loadCoreShare, parseProcStat, parseRedisInfo, redisPlacement, topCommands } from '../../bench/bench-redis.ts';

// Where the benchmark's Redis runs (bench/bench-redis.ts) and the figures read around a run.
describe('bench Redis placement', () => {
  it('starts its own Redis on the load core unless told otherwise', () => {
    expect(redisPlacement({})).toEqual({ kind: 'own', core: 1 });
    expect(redisPlacement({ BENCH_REDIS_CORE: '1' })).toEqual({ kind: 'own', core: 1 });
    expect(redisPlacement({ BENCH_REDIS_CORE: '0' })).toEqual({ kind: 'own', core: 0 });
    expect(redisPlacement({ BENCH_REDIS_CORE: 'none' })).toEqual({ kind: 'own', core: null });
  });

  it('uses BENCH_REDIS_URL as given, and refuses a core with it or a core it does not know', () => {
    expect(redisPlacement({ BENCH_REDIS_URL: 'redis://10.0.0.2:6379' })).toEqual({ kind: 'external', url: 'redis://10.0.0.2:6379' });
    expect(() => redisPlacement({ BENCH_REDIS_URL: 'redis://10.0.0.2:6379', BENCH_REDIS_CORE: '1' })).toThrow(/does not apply/);
    expect(() => redisPlacement({ BENCH_REDIS_CORE: '2' })).toThrow(/expected 0, 1 or none/);
  });

  it('says in the header where Redis runs', () => {
    expect(describePlacement({ kind: 'own', core: 1 }, true, 40000)).toBe("Redis: the bench's own redis-server (port 40000), on core 1 beside the load");
    expect(describePlacement({ kind: 'own', core: 0 }, true)).toMatch(/core 0 WITH the measured server/);
    expect(describePlacement({ kind: 'own', core: null }, true)).toMatch(/unpinned/);
    expect(describePlacement({ kind: 'own', core: 1 }, false)).toMatch(/unpinned.*taskset missing/);
    expect(describePlacement({ kind: 'external', url: 'redis://x' }, true)).toMatch(/external.*unpinned/);
  });
});

describe('bench load-core share', () => {
  it("counts Redis's CPU only where Redis shares the load core, and calls ≥ 90 % saturated", () => {
    expect(loadCoreShare({ loadCpuS: 1.5, redisCpuS: 1.2, wallS: 3, redisOnLoadCore: true })).toEqual({ share: 0.9, bound: true });
    expect(loadCoreShare({ loadCpuS: 1.5, redisCpuS: 1.2, wallS: 3, redisOnLoadCore: false })).toEqual({ share: 0.5, bound: false });
    expect(loadCoreShare({ loadCpuS: 2.6, redisCpuS: 0, wallS: 3, redisOnLoadCore: false }).bound).toBe(false);
  });

  it('reads Redis CPU seconds and commands from INFO cpu stats', () => {
    const info = '# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.500000\r\nused_cpu_sys_children:9.0\r\n# Stats\r\ntotal_connections_received:7\r\ntotal_commands_processed:12345\r\n';
    expect(parseRedisInfo(info)).toEqual({ cpuS: 3.75, commands: 12345, commandstats: new Map() });
    expect(parseRedisInfo('').cpuS).toBeNaN();
  });

  it("reads each core's busy share from /proc/stat, idle and iowait not busy", () => {
    const a = parseProcStat('cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2\n');
    const b = parseProcStat('cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 85 0 5 70 0 0 0 0 0 0\ncpu1 15 0 15 120 10 0 0 0 0 0\n');
    expect(a.get(0)).toEqual({ busy: 10, total: 60 });
    expect(a.has(-1)).toBe(false);
    const busy = coreBusy(a, b);
    expect(busy.get(0)).toBeCloseTo(0.8);
    expect(busy.get(1)).toBeCloseTo(0.2);
  });
});

describe('bench Redis command stats', () => {
  it('reads INFO commandstats and names the commands that took Redis the most time, per operation', () => {
    const before = parseRedisInfo('# Commandstats\r\ncmdstat_fcall:calls=100,usec=5000,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=90,usec_per_call=30.00\r\n').commandstats;
    const after = parseRedisInfo(
      '# Commandstats\r\ncmdstat_fcall:calls=1100,usec=65000,usec_per_call=59.09\r\ncmdstat_hset:calls=2000,usec=4000,usec_per_call=2.00\r\ncmdstat_xadd:calls=50,usec=500,usec_per_call=10.00\r\ncmdstat_get:calls=10,usec=10,usec_per_call=1.00\r\ncmdstat_info:calls=4,usec=500000,usec_per_call=125000.00\r\n',
    ).commandstats;
    expect(after.get('hset')).toEqual({ calls: 2000, usec: 4000 });
    // 1,000 operations: FCALL once each at 60 µs, HSET twice at 2 µs; INFO (the bench's own) left out; top 3 only.
    expect(topCommands(before, after, 1000)).toBe('fcall 1.00/op × 60 µs, hset 2.00/op × 2 µs, xadd 0.05/op × 10 µs');
    expect(topCommands(after, after, 1000)).toBe('');
  });
});
