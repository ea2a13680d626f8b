// A lean HTTP/1.1 client for the load generators of the rotation and SSO sections
// (bench/load-refresh.ts, load-sso.ts): one keep-alive connection on a raw `node:net` socket, one
// request at a time, the request's bytes written in one go, and a minimal strict response parser
// (status line, headers to the blank line, a body of Content-Length bytes, chunked, or — with
// neither — up to the connection's close). `node:http`'s Agent, ClientRequest and IncomingMessage
// cost several times the CPU per request, on the core the bench's Redis shares with the load
// (docs/performance.md, "The load generators"); autocannon, which loads the other rows, is as lean.
//
// A connection closed or reset while a request waits, or a response the parser refuses, fails
// that request (the caller counts it as an error) and leaves the connection to be opened again by
// the next request; a close between requests (the server's keep-alive timeout) does the same
// without failing anything.

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

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/**
 * Parses the response that starts at `start` in `buf`. Returns null when more bytes are needed
 * (`eof`: none will come, so a body delimited by the close ends here), throws on anything that is
 * not a well-formed HTTP/1.x response.
 */
export function parseResponse(buf: Buffer, start = 0, eof = false): Parsed | null {
  const headEnd = buf.indexOf(CRLFCRLF, start);
  if (headEnd === -1) {
    if (buf.length - start > 64 * 1024) throw new Error('response head over 64 KiB');
    if (eof && buf.length > start) throw new Error('connection closed inside a response head');
    return null;
  }
  const head = buf.toString('latin1', start, headEnd);
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
    if (colon <= 0 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) throw new Error(`bad header line: ${JSON.stringify(line.slice(0, 100))}`);
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
  const bodyStart = headEnd + 4;
  if (status === 204 || status === 304) return { status, body: Buffer.alloc(0), end: bodyStart, close };
  if (length !== -1) {
    if (buf.length - bodyStart < length) {
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
      if (lineEnd === -1) break;
      const sizeText = buf.toString('latin1', pos, lineEnd).split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error(`bad chunk size: ${JSON.stringify(sizeText.slice(0, 20))}`);
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // Trailers (none expected), each ended by CRLF, then the blank line.
        let p = lineEnd + 2;
        for (;;) {
          const e = buf.indexOf(CRLF, p);
          if (e === -1) break;
          if (e === p) return { status, body: Buffer.concat(parts), end: e + 2, close };
          p = e + 2;
        }
        break;
      }
      const dataStart = lineEnd + 2;
      if (buf.length < dataStart + size + 2) break;
      if (buf[dataStart + size] !== 13 || buf[dataStart + size + 1] !== 10) throw new Error('chunk not followed by CRLF');
      parts.push(buf.subarray(dataStart, dataStart + size));
      pos = dataStart + size + 2;
    }
    if (eof) throw new Error('connection closed inside a chunked body');
    return null;
  }
  // Neither: the body runs to the close.
  if (!eof) return null;
  return { status, body: buf.subarray(bodyStart), end: buf.length, close: true };
}

/**
 * One keep-alive connection to `host:port`, opened on the first request and again after a close.
 * `post(body)` sends `POST path` with a JSON body; one request at a time.
 */
export class RawConnection {
  private socket: Socket | null = null;
  private pending: Buffer | null = null;
  private waiter: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | null = null;
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

  post(body: string): Promise<RawResponse> {
    if (this.waiter !== null) return Promise.reject(new Error('a request is already waiting on this connection'));
    const socket = this.socket ?? this.open();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      socket.write(this.requestBytes(body));
    });
  }

  /** Closes the connection (a waiting request fails). */
  destroy(): void {
    this.socket?.destroy();
  }

  private open(): Socket {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    this.pending = null;
    this.socketError = null;
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err) => {
      this.socketError ??= err;
    });
    socket.on('end', () => {
      // The server is done with this connection: a body delimited by the close ends here; a
      // request still waiting fails; the next request opens another connection.
      this.onData(socket, null);
      if (socket === this.socket) this.fail(socket, new Error('socket hang up'));
    });
    socket.on('close', () => this.onClose(socket));
    return socket;
  }

  private onData(socket: Socket, chunk: Buffer | null): void {
    if (socket !== this.socket) return;
    const eof = chunk === null;
    if (chunk !== null) this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.pending === null) return;
    let parsed: Parsed | null;
    try {
      parsed = parseResponse(this.pending, 0, eof);
    } catch (err) {
      this.fail(socket, err as Error);
      return;
    }
    if (parsed === null) return;
    const w = this.waiter;
    if (w === null) {
      this.fail(socket, new Error('a response no request asked for'));
      return;
    }
    this.pending = parsed.end === this.pending.length ? null : this.pending.subarray(parsed.end);
    this.waiter = null;
    if (parsed.close || this.pending !== null) this.drop(socket);
    w.resolve({ status: parsed.status, body: parsed.body.toString('utf8') });
  }

  private onClose(socket: Socket): void {
    if (socket !== this.socket) return;
    this.fail(socket, this.socketError ?? new Error('socket hang up'));
  }

  /** Forgets the socket (the next request opens another), fails the waiting request. */
  private fail(socket: Socket, err: Error): void {
    this.drop(socket);
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  private drop(socket: Socket): void {
    if (this.socket === socket) {
      this.socket = null;
      this.pending = null;
    }
    socket.destroy();
  }
}
