// Errors are values with stable codes. They are mapped to problem+json (RFC 9457) in one place,
// src/http/problem.ts. Domain and store code throw these; nothing else knows about HTTP.
// Codes come from the closed catalogue in error-codes.ts.

import type { ErrorCode } from './error-codes.ts';

export type { ErrorCode } from './error-codes.ts';

export class TesseraError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra members for the problem document (e.g. the header that was missing). */
  readonly extra: Record<string, unknown>;
  /** Seconds, for 429 and 503 answers. */
  readonly retryAfter: number | undefined;

  constructor(status: number, code: ErrorCode, message: string, extra: Record<string, unknown> = {}, retryAfter?: number) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.extra = extra;
    this.retryAfter = retryAfter;
  }
}

export class BadRequest extends TesseraError {
  constructor(code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
    super(400, code, message, extra);
  }
}

export class Unauthorized extends TesseraError {
  constructor(code: ErrorCode, message: string) {
    super(401, code, message);
  }
}

export class Forbidden extends TesseraError {
  constructor(code: ErrorCode, message: string) {
    super(403, code, message);
  }
}

export class NotFound extends TesseraError {
  constructor(code: ErrorCode = 'not_found', message = 'No such resource.') {
    super(404, code, message);
  }
}

export class Conflict extends TesseraError {
  constructor(code: ErrorCode, message: string) {
    super(409, code, message);
  }
}

export class TooManyRequests extends TesseraError {
  constructor(retryAfterSeconds: number, code: ErrorCode, message: string) {
    super(429, code, message, {}, retryAfterSeconds);
  }
}

/** The store did not answer in time or refused the connection: 503 with Retry-After. */
/** The server is draining before it stops (readiness); another server answers. */
export class ShuttingDown extends TesseraError {
  constructor() {
    super(503, 'shutting_down', 'This server is shutting down; retry (another server will answer).', {}, 1);
  }
}

export class StoreUnavailable extends TesseraError {
  constructor(message = 'The session store is unavailable.', cause?: unknown) {
    super(503, 'store_unavailable', message, {}, 1);
    if (cause !== undefined) this.cause = cause;
  }
}
