import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseResponse, RawConnection } from '../../bench/raw-http.ts';

// The rotation and SSO load generators' HTTP client (bench/raw-http.ts): a keep-alive connection
// on a raw socket and a strict response parser, in place of node:http's Agent.

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

/** Feeds `bytes` to the parser split at `at`: the first part alone must ask for more. */
function splitAt(bytes: Buffer, at: number) {
  expect(parseResponse(bytes.subarray(0, at))).toBeNull();
  return parseResponse(bytes);
}

describe('parseResponse', () => {
  it('reads a Content-Length response, and asks for more at every split point before its end', () => {
    const bytes = Buffer.from(ok('{"refreshToken":"é-x"}'));
    for (let at = 0; at < bytes.length; at++) {
      const r = splitAt(bytes, at);
      expect(r?.status).toBe(200);
      expect(r?.body.toString('utf8')).toBe('{"refreshToken":"é-x"}');
      expect(r?.end).toBe(bytes.length);
      expect(r?.close).toBe(false);
    }
  });

  it('reads a chunked response (extensions and an empty trailer), split anywhere', () => {
    const bytes = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n{"a":\r\nb\r\n"0123456789\r\n1\r\n}\r\n0\r\n\r\n');
    for (let at = 0; at < bytes.length; at++) {
      const r = splitAt(bytes, at);
      expect(r?.body.toString()).toBe('{"a":"0123456789}');
      expect(r?.end).toBe(bytes.length);
    }
  });

  it('reads a 4xx problem document with its body, and what follows it is left for the next', () => {
    const problem = '{"type":"about:blank","title":"Unauthorized","status":401}';
    const first = `HTTP/1.1 401 Unauthorized\r\nContent-Type: application/problem+json\r\nContent-Length: ${problem.length}\r\n\r\n${problem}`;
    const bytes = Buffer.from(first + ok('{}'));
    const r = parseResponse(bytes);
    expect(r?.status).toBe(401);
    expect(JSON.parse(r!.body.toString())).toMatchObject({ status: 401 });
    expect(parseResponse(bytes, r!.end)?.body.toString()).toBe('{}');
  });

  it('takes Connection: close, and a body without a length up to the close only', () => {
    expect(parseResponse(Buffer.from(ok('{}', 'Connection: close\r\n')))?.close).toBe(true);
    const untilClose = Buffer.from('HTTP/1.1 503 Service Unavailable\r\n\r\nbusy');
    expect(parseResponse(untilClose)).toBeNull();
    expect(parseResponse(untilClose, 0, true)).toMatchObject({ status: 503, close: true });
    expect(parseResponse(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'))?.end).toBe(27);
  });

  it('refuses what is not a well-formed response, and a close inside one', () => {
    expect(() => parseResponse(Buffer.from('HTTP/2 200 OK\r\n\r\n'))).toThrow(/status line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nno colon\r\n\r\n'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n'))).toThrow(/content-length/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'))).toThrow(/content-length/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n'))).toThrow(/transfer-encoding/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'))).toThrow(/chunk size/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'))).toThrow(/interim/);
    // White space between a header's name and its colon, and a NUL byte in a header: refused, not read.
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\n{}'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\0\r\n\r\n{}'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nX-A\0: b\r\nContent-Length: 2\r\n\r\n{}'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 2\r\n\r\n{}'))).toThrow(/header line/);
    expect(() => parseResponse(Buffer.from(ok('{"a":1}')).subarray(0, -2), 0, true)).toThrow(/closed inside a response body/);
  });
});

/** The text parser the byte-by-byte one replaced (bench/raw-http.ts until 2026-12-07 late): the reference for its heads. */
function referenceHead(head: string): { status: number; length: number; chunked: boolean; close: boolean } {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/.exec(lines[0] as string);
  if (m === null) throw new Error(`bad status line: ${JSON.stringify((lines[0] as string).slice(0, 100))}`);
  const http10 = m[1] === '0';
  const status = Number(m[2]);
  if (status < 200) throw new Error(`unexpected interim response ${status}`);
  let length = -1;
  let chunked = false;
  let close = http10;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(':');
    // Strict since the late session's review: white space before the colon, or a NUL byte anywhere in the line, refused too.
    if (colon <= 0 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9 || /[ \t]$/.test(line.slice(0, colon)) || line.includes('\0')) throw new Error(`bad header line: ${JSON.stringify(line.slice(0, 100))}`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== -1 && length !== Number(value))) throw new Error(`bad content-length: ${JSON.stringify(value)}`);
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      if (value.toLowerCase() !== 'chunked') throw new Error(`unsupported transfer-encoding: ${JSON.stringify(value)}`);
      chunked = true;
    } else if (name === 'connection') {
      const v = value.toLowerCase();
      if (v.includes('close')) close = true;
      else if (http10 && v.includes('keep-alive')) close = false;
    }
  }
  if (chunked && length !== -1) throw new Error('both content-length and chunked');
  return { status, length, chunked, close };
}

describe('parseResponse reads a head as the text parser did', () => {
  // Random heads from pieces that are near the parser's every decision: the status line's bytes,
  // the three names it reads in any case and their near misses, white space that trim() takes or
  // leaves, lone CR and LF, colons, digits and Latin-1 bytes. The outcome — status and framing
  // through a whole response, or the error's message — must be the reference's.
  let seed = 13;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const pick = <T,>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
  const statusLines = ['HTTP/1.1 200 OK', 'HTTP/1.0 200 OK', 'HTTP/1.1 204 No Content', 'HTTP/1.1 401', 'HTTP/1.1 404 ', 'HTTP/1.1 100 Continue', 'HTTP/1.2 200 OK', 'HTTP/1.1 2000 OK', 'HTTP/1.1 20x OK', 'http/1.1 200 OK', 'HTTP/1.1  200 OK', 'HTTP/1.1 200 O\rK', 'HTTP/1.1 200 O\nK', 'HTTP/1.1 200\tOK', 'HTTP/1.1 503 Service Unavailable', 'HTTP/1.1 200 \xe9t\xe9', ''];
  const names = ['content-length', 'Content-Length', 'CONTENT-LENGTH', 'cOnTeNt-LeNgTh', 'content_length', 'content-lengths', 'content-lengt', 'content\rlength', 'Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING', 'transfer encoding', 'Connection', 'connection', 'CONNECTION', 'connectio', 'Keep-Alive', 'x-request-id', 'date', 'c\xf6nnection', ' content-length', '\tConnection', 'Content-Length ', 'Connection\t', 'content\0length', ''];
  const values = ['12', ' 12', '12 ', '\t12\t', '\xa012\xa0', '\x0b12', '012', '', ' ', '1 2', '+12', '-1', '1e2', '123456789012345', '1234567890123456', 'chunked', ' Chunked ', 'gzip', 'chunked, gzip', 'close', 'Close', 'keep-alive', 'Keep-Alive', 'keep-alive, close', 'upgrade', 'a:b', '\x85close', 'x\ry', 'x\ny', '0', '1\x002', 'close\0'];
  it('on 20,000 generated heads', () => {
    for (let i = 0; i < 20_000; i++) {
      const lines = [pick(statusLines)];
      for (let h = rnd(5); h > 0; h--) lines.push(rnd(12) === 0 ? pick(values) : `${pick(names)}${pick([':', ': ', ' :', '::'])}${pick(values)}`);
      const head = lines.join('\r\n');
      const body = 'x'.repeat(rnd(3) === 0 ? 12 : 0);
      const bytes = Buffer.concat([Buffer.from(head + '\r\n\r\n', 'latin1'), Buffer.from(body)]);
      let expected: unknown;
      try {
        expected = referenceHead(head);
      } catch (err) {
        expected = (err as Error).message;
      }
      let got: unknown;
      try {
        got = parseResponse(bytes, 0, true);
      } catch (err) {
        got = (err as Error).message;
      }
      if (typeof expected === 'string' || typeof got === 'string') {
        // Only an error the head's framing leads to afterwards (a body cut short, a chunked body
        // that is not one) may differ from the head's own outcome when the head itself is sound.
        if (typeof expected === 'string') expect([head, got]).toEqual([head, expected]);
        else expect(got).toMatch(/closed inside|chunk/);
        continue;
      }
      const e = expected as { status: number; length: number; chunked: boolean; close: boolean };
      const g = got as { status: number; close: boolean; body: Buffer };
      expect([head, g.status, g.close || e.length === -1]).toEqual([head, e.status, e.close || e.length === -1]);
      if (e.length !== -1 && e.status !== 204 && e.status !== 304) expect(g.body.length).toBe(e.length);
    }
  });
});

describe('RawConnection', () => {
  const servers: { close(): unknown }[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });

  /** A raw TCP server answering each connection with `onConnection`. */
  async function rawServer(onConnection: (socket: Socket, n: number) => void): Promise<{ server: Server; port: number }> {
    let n = 0;
    const server = createServer((s) => onConnection(s, n++));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { server, port: (server.address() as AddressInfo).port };
  }

  it('sends well-formed POSTs that node:http reads, all on one kept-alive connection', async () => {
    const seen: { method?: string; url?: string; type?: string; body: string; socket: unknown }[] = [];
    const server = createHttpServer((req: IncomingMessage, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], body, socket: req.socket });
        res.writeHead(seen.length === 2 ? 401 : 200, { 'content-type': 'application/json' });
        // Chunked (no content-length) for the third: node:http's default for a streamed body.
        if (seen.length === 3) res.write('{"n":');
        res.end(seen.length === 3 ? '3}' : JSON.stringify({ n: seen.length }));
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const conn = RawConnection.to(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/auth/token/refresh?ignored=1`);
    const replies = [];
    for (const token of ['a', 'b', 'ü']) replies.push(await conn.post(JSON.stringify({ refreshToken: token })));
    conn.destroy();
    expect(replies).toEqual([
      { status: 200, body: '{"n":1}' },
      { status: 401, body: '{"n":2}' },
      { status: 200, body: '{"n":3}' },
    ]);
    expect(seen.map((s) => [s.method, s.url, s.type, s.body])).toEqual(
      ['a', 'b', 'ü'].map((t) => ['POST', '/api/v1/auth/token/refresh', 'application/json', JSON.stringify({ refreshToken: t })]),
    );
    expect(new Set(seen.map((s) => s.socket)).size).toBe(1);
  });

  it('joins a response cut by the end of a read, and one larger than the shared read buffer', async () => {
    // Responses reach the client in pieces: the head and part of the body, then the rest after a
    // pause (two reads); then a body of 200,000 bytes (more than the 64 KiB every connection reads
    // into). Each is answered whole, and a second connection's reads in between do not mix in.
    // Each connection's answers are its own (from its request's path), so that a response mixed
    // across the two connections would show.
    const big = { a: 'a'.repeat(200_000), b: 'b'.repeat(200_000) };
    const { port } = await rawServer((socket) => {
      let n = 0;
      socket.on('data', (d: Buffer) => {
        const who = d.toString('latin1').startsWith('POST /a ') ? 'a' : 'b';
        const body = n++ === 0 ? `{"refreshToken":"cut-${who}"}` : big[who];
        const bytes = Buffer.from(ok(body));
        const at = bytes.length - 7;
        socket.write(bytes.subarray(0, at), () => setTimeout(() => socket.write(bytes.subarray(at)), 20));
      });
    });
    const a = RawConnection.to(`http://127.0.0.1:${port}/a`);
    const b = RawConnection.to(`http://127.0.0.1:${port}/b`);
    const [ra, rb] = await Promise.all([a.post('{}'), b.post('{}')]);
    expect([ra, rb]).toEqual([
      { status: 200, body: '{"refreshToken":"cut-a"}' },
      { status: 200, body: '{"refreshToken":"cut-b"}' },
    ]);
    const [ra2, rb2] = await Promise.all([a.post('{}'), b.post('{}')]);
    expect(ra2.body === big.a && rb2.body === big.b).toBe(true);
    await expect(a.post('{}')).resolves.toMatchObject({ status: 200 });
    a.destroy();
    b.destroy();
  });

  it('fails the request on a reset mid-body, and the next request opens a new connection', async () => {
    const { port } = await rawServer((socket, n) => {
      socket.once('data', () => {
        if (n === 0) {
          // Head and half the body, then a reset.
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{"refreshTok', () => socket.resetAndDestroy());
        } else socket.write(ok('{"refreshToken":"t2"}'));
      });
    });
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    await expect(conn.post('{}')).rejects.toThrow(/ECONNRESET|socket hang up/);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{"refreshToken":"t2"}' });
    conn.destroy();
  });

  it('fails the request when the server closes before answering, and on a malformed response', async () => {
    const { port } = await rawServer((socket, n) => {
      socket.once('data', () => {
        if (n === 0) socket.end();
        else if (n === 1) socket.write('SPDY/3 200 OK\r\n\r\n');
        else socket.write(ok('{}'));
      });
    });
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    await expect(conn.post('{}')).rejects.toThrow(/socket hang up/);
    await expect(conn.post('{}')).rejects.toThrow(/bad status line/);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{}' });
    conn.destroy();
  });

  it('opens a new connection after Connection: close and after an idle close', async () => {
    const connections: Socket[] = [];
    let idleClosed!: () => void;
    const secondClosed = new Promise<void>((r) => (idleClosed = r));
    const { port } = await rawServer((socket, n) => {
      connections.push(socket);
      if (n === 1) socket.on('close', () => idleClosed());
      socket.on('data', () => {
        socket.write(ok('{}', n === 0 ? 'Connection: close\r\n' : ''));
        // The second connection is closed by the server once idle (a keep-alive timeout).
        if (n === 1) setImmediate(() => socket.end());
      });
    });
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    await conn.post('{}');
    await conn.post('{}');
    await secondClosed;
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{}' });
    conn.destroy();
    expect(connections.length).toBe(3);
  });

  /**
   * A server that answers the connection's k-th request with `answers[k]`: each a list of writes,
   * 30 ms apart (each its own read at the client).
   */
  async function scripted(answers: string[][]): Promise<number> {
    const { port } = await rawServer((socket) => {
      let k = 0;
      socket.on('data', () => {
        const parts = answers[k++] ?? [];
        const next = (i: number) => {
          if (i < parts.length) socket.write(parts[i] as string, () => setTimeout(() => next(i + 1), 30));
        };
        next(0);
      });
    });
    return port;
  }

  // A large response leaves the shared read buffer full of its bytes past the next read's end:
  // text with a blank line and CRLFs every ~1,000 bytes, which a parser that looked past the read
  // would take for a head's end or a chunk-size line's.
  // Its head and first bytes in one read, the rest in the next: that one fills the buffer from its
  // start with the body's bytes.
  const stale = ('z'.repeat(1000) + '\r\n\r\n').repeat(60);
  const large = [ok(stale).slice(0, 100), ok(stale).slice(100)];

  it("a head cut by the end of a read after a large response: the shared buffer's older bytes are not read as its end", async () => {
    const port = await scripted([large, ['HTTP/1.1 200 OK\r\ncontent-le', 'ngth: 5\r\n\r\n{"x"', '}']]);
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    expect((await conn.post('{}')).body).toBe(stale);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{"x"}' });
    conn.destroy();
  });

  it("a chunk-size line cut by the end of a read after a large response: the shared buffer's older bytes are not read as its end", async () => {
    const port = await scripted([large, ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1', '4\r\n{"y":"0123456789ab"}\r\n0\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"z":\r\n', '2\r\n1}\r\n0\r\n\r\n']]);
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    expect((await conn.post('{}')).body).toBe(stale);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{"y":"0123456789ab"}' });
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{"z":1}' });
    conn.destroy();
  });

  it('a body without a length, ended by the close, is the answer', async () => {
    const { port } = await rawServer((socket) => {
      socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ', () => setTimeout(() => socket.end('the close'), 30)));
    });
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: 'until the close' });
    conn.destroy();
  });

  it('fails the request on bytes after its response, and the next request opens a new connection', async () => {
    const { port } = await rawServer((socket, n) => {
      socket.once('data', () => socket.write(n === 0 ? ok('{"one":1}') + ok('{"two":2}') : ok('{}')));
    });
    const conn = RawConnection.to(`http://127.0.0.1:${port}/r`);
    await expect(conn.post('{}')).rejects.toThrow(/after the response/);
    await expect(conn.post('{}')).resolves.toEqual({ status: 200, body: '{}' });
    conn.destroy();
  });
});
