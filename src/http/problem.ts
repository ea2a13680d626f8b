// The one place where errors become RFC 9457 problem documents. Every error a client can see,
// Fastify's own included (validation, bad JSON, body too large, 404), leaves through here.

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
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const PROBLEM_TYPE_BASE = 'https://tessera.dev/problems/';

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: ErrorCode,
  detail: string,
  extra: Record<string, unknown> = {},
  retryAfter?: number,
): FastifyReply {
  const body: Problem = {
    type: PROBLEM_TYPE_BASE + code,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    code,
    requestId: request.ctx?.requestId ?? String(request.id),
    ...extra,
  };
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  if (status === 401) void reply.header('www-authenticate', 'Bearer');
  return reply.code(status).type('application/problem+json').send(body);
}

/** Maps Fastify's own error codes to stable Tessera codes. */
function fromFastifyError(err: FastifyError): { status: number; code: ErrorCode; detail: string } | null {
  if (err.validation) {
    const first = err.validation[0];
    const where = err.validationContext ?? 'request';
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
    const mapped = fromFastifyError(err);
    if (mapped) return sendProblem(request, reply, mapped.status, mapped.code, mapped.detail);
    request.log.error({ err }, 'unexpected error');
    return sendProblem(request, reply, 500, 'internal_error', 'An unexpected error occurred.');
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, 404, 'not_found', `No route for ${request.method} ${request.url.split('?')[0] ?? ''}.`),
  );
}
