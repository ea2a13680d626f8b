// The one place where errors become RFC 9457 problem documents. Every error a client can see,
// Fastify's own included (validation, bad JSON, body too large, 404, a malformed URL, an overlong
// path parameter) and Node's HTTP parser's (headers too large, a request timeout, bytes that are
// not HTTP), leaves through here. (The token API's RFC 6749 error objects: token-client-auth.ts.)

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TesseraError, type ErrorCode } from '../domain/errors.ts';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  requestId: string;
  [extra: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const PROBLEM_TYPE_BASE = 'https://tessera.dev/problems/';

/** The problem document itself, for answers written outside Fastify's reply (raw sockets, Koa). */
export function problemDocument(status: number, code: ErrorCode, detail: string, requestId: string): Problem {
  return { type: PROBLEM_TYPE_BASE + code, title: TITLES[status] ?? 'Error', status, detail, code, requestId };
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: ErrorCode,
  detail: string,
  extra: Record<string, unknown> = {},
  retryAfter?: number,
): FastifyReply {
  const body: Problem = { ...problemDocument(status, code, detail, request.ctx?.requestId ?? String(request.id)), ...extra };
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  if (status === 401) void reply.header('www-authenticate', 'Bearer');
  return reply.code(status).type('application/problem+json').send(body);
}

/** The `maximum` of the route's `limit` query parameter (every listing declares one). */
function listingMaxOf(request: FastifyRequest | undefined): number | undefined {
  const qs = request?.routeOptions.schema?.querystring as { properties?: { limit?: { maximum?: unknown } } } | undefined;
  const max = qs?.properties?.limit?.maximum;
  return typeof max === 'number' ? max : undefined;
}

/** Maps Fastify's own error codes to stable Tessera codes. */
function fromFastifyError(err: FastifyError, request?: FastifyRequest): { status: number; code: ErrorCode; detail: string } | null {
  if (err.validation) {
    const first = err.validation[0];
    const where = err.validationContext ?? 'request';
    if (where === 'querystring' && first?.instancePath === '/limit') {
      // A listing's page size out of its range: the documented code, as the stores answer it.
      const max = listingMaxOf(request);
      return { status: 400, code: 'invalid_limit', detail: max === undefined ? `limit ${first.message ?? 'is invalid'}` : `limit must be an integer from 1 to ${max}.` };
    }
    const path = first?.instancePath ? `${where}${first.instancePath.replaceAll('/', '.')}` : where;
    let detail = `${path} ${first?.message ?? 'is invalid'}`;
    if (first?.keyword === 'additionalProperties') {
      detail = `${path} has an unknown field "${String((first.params as { additionalProperty?: string }).additionalProperty)}"`;
    }
    return { status: 400, code: 'invalid_request', detail };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'body_too_large', detail: 'The request body is larger than allowed.' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'unsupported_media_type', detail: 'Send the body as application/json.' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'invalid_json', detail: 'The body is empty but Content-Type says JSON.' };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, code: 'invalid_json', detail: 'The body is not valid JSON.' };
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_ASYNC_CONSTRAINT':
      return { status: 400, code: 'bad_url', detail: 'The request URL is malformed.' };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { status: 414, code: 'uri_too_long', detail: 'A path parameter is longer than allowed (200 characters).' };
    case 'FST_ERR_NOT_FOUND':
      return { status: 404, code: 'not_found', detail: 'No such resource.' };
  }
  if (err instanceof SyntaxError) {
    return { status: 400, code: 'invalid_json', detail: 'The body is not valid JSON.' };
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: 'bad_request', detail: err.message };
  }
  return null;
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof TesseraError) {
      if (err.status >= 500) request.log.warn({ code: err.code, err: err.message }, 'request failed');
      return sendProblem(request, reply, err.status, err.code, err.message, err.extra, err.retryAfter);
    }
    const mapped = fromFastifyError(err, request);
    if (mapped) return sendProblem(request, reply, mapped.status, mapped.code, mapped.detail);
    request.log.error({ err }, 'unexpected error');
    return sendProblem(request, reply, 500, 'internal_error', 'An unexpected error occurred.');
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, 404, 'not_found', `No route for ${request.method} ${request.url.split('?')[0] ?? ''}.`),
  );
}

/**
 * Fastify's `frameworkErrors`: errors found before any route runs (a malformed URL, an overlong
 * path parameter), which otherwise answer in Fastify's own JSON shape.
 */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = fromFastifyError(err) ?? { status: 400, code: 'bad_request' as const, detail: 'The request is malformed.' };
  void reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff');
  sendProblem(request, reply, mapped.status, mapped.code, mapped.detail);
}

/**
 * The server's `clientError`: Node's HTTP parser refused the request before Fastify saw it
 * (headers too large, a timeout, bytes that are not HTTP). The problem document is written to
 * the socket, which is then closed, as Node does.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ([431, 'headers_too_large', 'The request line and headers are larger than allowed.'] as const)
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ([408, 'request_timeout', 'The request was not received in time.'] as const)
        : ([400, 'bad_request', 'The request is not valid HTTP.'] as const);
  const body = JSON.stringify(problemDocument(status, code, detail, '-'));
  // Only when no response has started on this connection (as Node's own handler checks).
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (socket.writable && !started) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
