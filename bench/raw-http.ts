// A lean HTTP/1.1 client for the load generators of the rotation and SSO sections
// (bench/load-refresh.ts, load-sso.ts): one keep-alive connection on a raw `node:net` socket, one
// request at a time, the request's bytes written in one go, and a minimal strict response parser
// (status line, headers to the blank line, a body of Content-Length bytes, chunked, or — with
// neither — up to the connection's close). `node:http`'s Agent, ClientRequest and IncomingMessage
// cost several times the CPU per request, on the core the bench's Redis shares with the load
// (docs/performance.md, "The load generators"); autocannon, which loads the other rows, is as lean.
//
// A connection closed or reset while a request waits, a response the parser refuses, or bytes
// after a response (one request, one response), fails that request (the caller counts it as an error) and leaves the connection to be opened again by
// the next request; a close between requests (the server's keep-alive timeout) does the same
// without failing anything.
//
// Leaner since 2026-12-07 late (docs/performance.md, "The SSO exchange's load generator and its
// Redis work"): the socket reads into one buffer shared by every connection (`onread`: no Buffer
// and no stream `push`/'data' event per read; a response cut by the end of a read is copied out),
// `send` answers by a callback (no promise per request), the body is handed over as bytes (a
// caller that needs no text makes none), and the head is parsed byte by byte (no text, no split
// lines, no regular expression).

import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  body: string;
}

/** One parsed response: its status, its body and the offset just past it in the buffer. */
export interface Parsed {
  status: number;
  body: Buffer;
  end: number;
  /** The server said `Connection: close` (or spoke HTTP/1.0 without keep-alive). */
  close: boolean;
}

/** What a response's head says: its status, its framing (a Content-Length, chunked, or neither: -1), whether it closes. */
interface Head {
  status: number;
  length: number;
  chunked: boolean;
  close: boolean;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

const COLON = 58;
/** The header names the parser reads, lower case, as bytes. */
const CONTENT_LENGTH = Buffer.from('content-length');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding');
const CONNECTION = Buffer.from('connection');

/** Whether buf[at, at + name.length) is `name` (lower-case ASCII) in any case, as toLowerCase() would compare it. */
function nameIs(buf: Buffer, at: number, end: number, name: Buffer): boolean {
  if (end - at !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    const e = name[i] as number;
    const b = buf[at + i] as number;
    // A letter matches either case; anything else only itself (0x41–0x5a are the only bytes | 0x20 makes a–z).
    if (b !== e && (e < 0x61 || e > 0x7a || (b | 0x20) !== e)) return false;
  }
  return true;
}

/** The first CRLF in buf[from, end), or `end` (a loop in JavaScript: Buffer's indexOf is a call into C++ each time). */
function crlfAt(buf: Buffer, from: number, end: number): number {
  for (let i = from; i < end - 1; i++) if (buf[i] === 13 && buf[i + 1] === 10) return i;
  return end;
}

/**
 * A header line's end: the first CRLF in buf[from, end), or `end`; -1 when a NUL byte comes first
 * (refused in a header: RFC 9110 5.5). buf[end] is the head's blank line, so reading one past is safe.
 */
function headerLineEnd(buf: Buffer, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    const b = buf[i] as number;
    if (b === 13) {
      if (buf[i + 1] === 10) return i;
    } else if (b === 0) return -1;
  }
  return end;
}

/** String.prototype.trim's white space among Latin-1 bytes. */
const isSpace = (b: number) => (b >= 9 && b <= 13) || b === 32 || b === 0xa0;

/**
 * Parses a response head, the bytes buf[start, end) before the blank line, byte by byte (no string
 * made for a well-formed head but for the rare headers' values); throws on anything that is not
 * well-formed HTTP/1.x, with the messages the text parser it replaces gave.
 */
function parseHead(buf: Buffer, start: number, end: number): Head {
  const lineEnd = crlfAt(buf, start, end);
  const n = lineEnd - start;
  let ok = n >= 12 && buf[start] === 0x48 && buf[start + 1] === 0x54 && buf[start + 2] === 0x54 && buf[start + 3] === 0x50 && buf[start + 4] === 0x2f && buf[start + 5] === 0x31 && buf[start + 6] === 0x2e;
  ok &&= (buf[start + 7] === 0x30 || buf[start + 7] === 0x31) && buf[start + 8] === 0x20;
  for (let i = 9; ok && i < 12; i++) ok = (buf[start + i] as number) >= 0x30 && (buf[start + i] as number) <= 0x39;
  if (ok && n > 12) {
    ok = buf[start + 12] === 0x20;
    // The reason phrase: anything but CR and LF.
    for (let i = start + 13; ok && i < lineEnd; i++) ok = buf[i] !== 13 && buf[i] !== 10;
  }
  if (!ok) throw new Error(`bad status line: ${JSON.stringify(buf.toString('latin1', start, lineEnd).slice(0, 100))}`);
  const http10 = buf[start + 7] === 0x30;
  const status = ((buf[start + 9] as number) - 48) * 100 + ((buf[start + 10] as number) - 48) * 10 + ((buf[start + 11] as number) - 48);
  if (status < 200) throw new Error(`unexpected interim response ${status}`);
  let length = -1;
  let chunked = false;
  let close = http10;
  for (let p = lineEnd + 2; p <= end; ) {
    const e = headerLineEnd(buf, p, end);
    if (e === -1) throw new Error(`bad header line: ${JSON.stringify(buf.toString('latin1', p, crlfAt(buf, p, end)).slice(0, 100))}`);
    let colon = p;
    while (colon < e && buf[colon] !== COLON) colon++;
    if (colon === e) colon = -1;
    // Refused: no colon, an empty name, a line that starts with white space (obsolete folding),
    // white space between the name and the colon (RFC 9112 5.1: "Content-Length : 2" is not a
    // Content-Length), a NUL byte (above).
    if (colon <= p || buf[p] === 32 || buf[p] === 9 || buf[colon - 1] === 32 || buf[colon - 1] === 9) throw new Error(`bad header line: ${JSON.stringify(buf.toString('latin1', p, e).slice(0, 100))}`);
    let v = colon + 1;
    let ve = e;
    if (nameIs(buf, p, colon, CONTENT_LENGTH)) {
      while (v < ve && isSpace(buf[v] as number)) v++;
      while (ve > v && isSpace(buf[ve - 1] as number)) ve--;
      let value = 0;
      let digits = ve - v >= 1 && ve - v <= 15;
      for (let i = v; digits && i < ve; i++) {
        const d = (buf[i] as number) - 48;
        digits = d >= 0 && d <= 9;
        value = value * 10 + d;
      }
      if (!digits || (length !== -1 && length !== value)) throw new Error(`bad content-length: ${JSON.stringify(buf.toString('latin1', colon + 1, e).trim())}`);
      length = value;
    } else if (nameIs(buf, p, colon, TRANSFER_ENCODING)) {
      const value = buf.toString('latin1', colon + 1, e).trim();
      if (value.toLowerCase() !== 'chunked') throw new Error(`unsupported transfer-encoding: ${JSON.stringify(value)}`);
      chunked = true;
    } else if (nameIs(buf, p, colon, CONNECTION)) {
      const value = buf.toString('latin1', colon + 1, e).trim().toLowerCase();
      if (value.includes('close')) close = true;
      else if (http10 && value.includes('keep-alive')) close = false;
    }
    p = e + 2;
  }
  if (chunked && length !== -1) throw new Error('both content-length and chunked');
  return { status, length, chunked, close };
}

/**
 * Parses the response that starts at `start` in `buf` (up to `limit`, default its length).
 * Returns null when more bytes are needed (`eof`: none will come, so a body delimited by the close
 * ends here), throws on anything that is not a well-formed HTTP/1.x response.
 */
export function parseResponse(buf: Buffer, start = 0, eof = false, limit = buf.length): Parsed | null {
  let headEnd = buf.indexOf(CRLFCRLF, start);
  if (headEnd + 4 > limit) headEnd = -1;
  if (headEnd === -1) {
    if (limit - start > 64 * 1024) throw new Error('response head over 64 KiB');
    if (eof && limit > start) throw new Error('connection closed inside a response head');
    return null;
  }
  const { status, length, chunked, close } = parseHead(buf, start, headEnd);
  const bodyStart = headEnd + 4;
  if (status === 204 || status === 304) return { status, body: buf.subarray(bodyStart, bodyStart), end: bodyStart, close };
  if (length !== -1) {
    if (limit - bodyStart < length) {
      if (eof) throw new Error('connection closed inside a response body');
      return null;
    }
    return { status, body: buf.subarray(bodyStart, bodyStart + length), end: bodyStart + length, close };
  }
  if (chunked) {
    const parts: Buffer[] = [];
    let pos = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf(CRLF, pos);
      if (lineEnd === -1 || lineEnd + 2 > limit) break;
      const sizeText = buf.toString('latin1', pos, lineEnd).split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error(`bad chunk size: ${JSON.stringify(sizeText.slice(0, 20))}`);
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // Trailers (none expected), each ended by CRLF, then the blank line.
        let p = lineEnd + 2;
        for (;;) {
          const e = buf.indexOf(CRLF, p);
          if (e === -1 || e + 2 > limit) break;
          if (e === p) return { status, body: Buffer.concat(parts), end: e + 2, close };
          p = e + 2;
        }
        break;
      }
      const dataStart = lineEnd + 2;
      if (limit < dataStart + size + 2) break;
      if (buf[dataStart + size] !== 13 || buf[dataStart + size + 1] !== 10) throw new Error('chunk not followed by CRLF');
      parts.push(buf.subarray(dataStart, dataStart + size));
      pos = dataStart + size + 2;
    }
    if (eof) throw new Error('connection closed inside a chunked body');
    return null;
  }
  // Neither: the body runs to the close.
  if (!eof) return null;
  return { status, body: buf.subarray(bodyStart, limit), end: limit, close: true };
}

/**
 * A request's answer: an error (the connection closed or reset, a malformed response), or its
 * status and body. The body is a view of the shared read buffer, valid only during the call:
 * read it (`toString`, `JSON.parse`) there or copy it.
 */
export type Done = (err: Error | null, status: number, body: Buffer) => void;

const EMPTY = Buffer.alloc(0);

/**
 * The buffer every connection reads into (`onread`): a read is parsed, answered and — when it
 * ends inside a response — copied out in its own callback, before any other read can happen.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * One keep-alive connection to `host:port`, opened on the first request and again after a close.
 * `send(body, done)` / `post(body)` send `POST path` with a JSON body; one request at a time.
 */
export class RawConnection {
  private socket: Socket | null = null;
  /** The bytes of a response not complete yet (a copy, not a view of READ_BUFFER). */
  private pending: Buffer | null = null;
  private done: Done | null = null;
  private socketError: Error | null = null;
  private readonly head: string;
  private readonly host: string;
  private readonly port: number;

  constructor(host: string, port: number, path: string) {
    this.host = host;
    this.port = port;
    this.head = `POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: `;
  }

  /** A connection for POSTs to `url`'s path (its query left out). */
  static to(url: string): RawConnection {
    const u = new URL(url);
    return new RawConnection(u.hostname, Number(u.port || 80), u.pathname);
  }

  /** The request's bytes: the precomputed head, the body's length, the body. */
  requestBytes(body: string): string {
    return `${this.head}${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }

  /**
   * Sends the request and calls `done` once with its answer — never before `send` returns. One
   * request at a time: a second while one waits fails at once (asynchronously).
   */
  send(body: string, done: Done): void {
    this.sendRequest(this.requestBytes(body), done);
  }

  /** `send` of a request made by `requestBytes` beforehand (a generator makes its requests before the load). */
  sendRequest(request: string, done: Done): void {
    if (this.done !== null) {
      queueMicrotask(() => done(new Error('a request is already waiting on this connection'), 0, EMPTY));
      return;
    }
    const socket = this.socket ?? this.open();
    this.done = done;
    socket.write(request);
  }

  post(body: string): Promise<RawResponse> {
    return new Promise((resolve, reject) => this.send(body, (err, status, bytes) => (err === null ? resolve({ status, body: bytes.toString('utf8') }) : reject(err))));
  }

  /** Closes the connection (a waiting request fails). */
  destroy(): void {
    this.socket?.destroy();
  }

  private open(): Socket {
    const socket: Socket = connect({
      host: this.host,
      port: this.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number) => this.onRead(socket, n) },
    });
    this.socket = socket;
    this.pending = null;
    this.socketError = null;
    socket.on('error', (err) => {
      this.socketError ??= err;
    });
    socket.on('end', () => {
      // The server is done with this connection: a body delimited by the close ends here; a
      // request still waiting fails; the next request opens another connection.
      if (socket === this.socket && this.pending !== null) this.consume(socket, this.pending, this.pending.length, true);
      if (socket === this.socket) this.fail(socket, new Error('socket hang up'));
    });
    socket.on('close', () => this.onClose(socket));
    return socket;
  }

  private onRead(socket: Socket, n: number): true {
    if (socket !== this.socket) return true;
    if (this.pending === null) this.consume(socket, READ_BUFFER, n, false);
    else {
      const joined = Buffer.concat([this.pending, READ_BUFFER.subarray(0, n)]);
      this.consume(socket, joined, joined.length, false);
    }
    return true;
  }

  /** Answers the waiting request with the response in `buf` up to `limit`, or keeps the bytes for more. */
  private consume(socket: Socket, buf: Buffer, limit: number, eof: boolean): void {
    let parsed: Parsed | null;
    try {
      parsed = parseResponse(buf, 0, eof, limit);
    } catch (err) {
      this.fail(socket, err as Error);
      return;
    }
    if (parsed === null) {
      this.pending = buf === READ_BUFFER ? Buffer.from(buf.subarray(0, limit)) : buf;
      return;
    }
    const done = this.done;
    if (done === null) {
      this.fail(socket, new Error('a response no request asked for'));
      return;
    }
    if (parsed.end !== limit) {
      // Bytes after the response, before the next request was sent: a server out of step with
      // its requests (or a response mixed up with another). The request fails; the connection goes.
      this.fail(socket, new Error(`${limit - parsed.end} byte(s) after the response`));
      return;
    }
    this.pending = null;
    this.done = null;
    if (parsed.close) this.drop(socket);
    done(null, parsed.status, parsed.body);
  }

  private onClose(socket: Socket): void {
    if (socket !== this.socket) return;
    this.fail(socket, this.socketError ?? new Error('socket hang up'));
  }

  /** Forgets the socket (the next request opens another), fails the waiting request. */
  private fail(socket: Socket, err: Error): void {
    this.drop(socket);
    const done = this.done;
    this.done = null;
    done?.(err, 0, EMPTY);
  }

  private drop(socket: Socket): void {
    if (this.socket === socket) {
      this.socket = null;
      this.pending = null;
    }
    socket.destroy();
  }
}
