import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ErrorReply } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { LeanResp, type WritePolicy } from '../../bench/lean-resp.ts';

// The lean pipelined client of bench/lean-resp-ab.ts (bench/lean-resp.ts), against a fake server
// on a socket: what it writes, how it reads replies (split anywhere), and its write policies.

let server: Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

/** A server that hands each connection's received bytes to `onData`; the client of `policy`. */
async function pair(policy: WritePolicy, onData: (socket: Socket, bytes: Buffer) => void): Promise<LeanResp> {
  server = createServer((socket) => socket.on('data', (b: Buffer) => onData(socket, b)));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return LeanResp.open('127.0.0.1', (server.address() as AddressInfo).port, policy);
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('LeanResp', () => {
  it('encodes strings (UTF-8) and Buffers as RESP arrays of bulk strings', async () => {
    let got = Buffer.alloc(0);
    const client = await pair('turn', (socket, b) => {
      got = Buffer.concat([got, b]);
      if (got.toString('latin1').endsWith('\r\n') && got.toString('latin1').includes('zz')) socket.write('+OK\r\n');
    });
    const reply = await client.send(['FCALL', 'é', Buffer.from([0, 13, 10, 255]), '', 'zz']);
    expect(reply).toBe('OK');
    expect(got.equals(Buffer.concat([Buffer.from('*5\r\n$5\r\nFCALL\r\n$2\r\né\r\n$4\r\n'), Buffer.from([0, 13, 10, 255]), Buffer.from('\r\n$0\r\n\r\n$2\r\nzz\r\n')]))).toBe(true);
    await client.close();
  });

  it('reads every reply type, split at any byte, in order, bulk strings as Buffers for a binary command', async () => {
    const reply = Buffer.from('*5\r\n$7\r\nrotated\r\n$4\r\na\r\nb\r\n:-42\r\n$-1\r\n*2\r\n+ok\r\n*0\r\n');
    const resp3 = Buffer.from('>2\r\n$3\r\npub\r\n$1\r\nx\r\n%1\r\n$1\r\nk\r\n,1.5\r\n');
    const tail = Buffer.from('-ERR Function not found\r\n_\r\n#t\r\n*-1\r\n');
    const all = Buffer.concat([reply, resp3, tail]);
    for (let at = 1; at < all.length; at++) {
      let sent = false;
      const client = await pair('turn', (socket) => {
        if (sent) return;
        sent = true;
        socket.write(all.subarray(0, at));
        setTimeout(() => socket.write(all.subarray(at)), 2);
      });
      const replies = [client.send(['A'], true), client.send(['B']), client.send(['C']).catch((e: unknown) => e), client.send(['D']), client.send(['E']), client.send(['F'])];
      const [a, b, c, d, e, f] = await Promise.all(replies);
      expect(a).toEqual([Buffer.from('rotated'), Buffer.from('a\r\nb'), -42, null, ['ok', []]]);
      expect(b).toEqual(['k', 1.5]); // the push before it is not an answer
      expect(c).toBeInstanceOf(ErrorReply);
      expect((c as Error).message).toBe('ERR Function not found');
      expect([d, e, f]).toEqual([null, true, null]);
      await client.close();
      server?.close();
    }
  });

  it('writes per policy: turn once per turn, idle at once with nothing in flight, k<N> at N, micro per task', async () => {
    const counts: Record<string, number> = {};
    for (const policy of ['turn', 'idle', 'k2', 'micro'] as const) {
      const client = await pair(policy, (socket, b) => socket.write('+OK\r\n'.repeat(b.toString().split('*1').length - 1)));
      const before = client.writes;
      const replies = [client.send(['PING']), client.send(['PING']), client.send(['PING'])];
      counts[`${policy} sync`] = client.writes - before;
      await Promise.all(replies);
      counts[policy] = client.writes - before;
      await client.close();
      server?.close();
      await wait(1);
    }
    expect(counts).toEqual({ 'turn sync': 0, turn: 1, 'idle sync': 1, idle: 2, 'k2 sync': 1, k2: 2, 'micro sync': 0, micro: 1 });
  });
});
