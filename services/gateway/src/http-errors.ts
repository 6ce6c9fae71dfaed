import { randomBytes } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { cutText } from '@tollgate/limiter/internal';
import type { ErrorBody } from '@tollgate/queue';
import { anthropicError } from '@tollgate/queue/internal';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Bytes of randomness in a request id. */
export const REQUEST_ID_BYTES = 12;

/** A new request id, as the API spells them. */
export const newRequestId = () => `req_${randomBytes(REQUEST_ID_BYTES).toString('hex')}`;

/** Sends Anthropic's error envelope (anthropic-api.md §2) with the request's id. */
export function sendError(request: FastifyRequest, reply: FastifyReply, status: number, message: string, type?: string): FastifyReply {
  const body = anthropicError(status, cutText(message), request.id);
  return reply
    .code(status)
    .type('application/json')
    .send(type === undefined ? body : { ...body, error: { ...body.error, type } });
}

/** The code of the error a too deeply nested body raises. */
export const JSON_TOO_DEEP = 'TOLLGATE_JSON_TOO_DEEP';

/**
 * A failed job's error body as the gateway answers it: the upstream's, with its request id, or, for a failure that never
 * reached the upstream (Tollgate's own: a tenant's budget, a lost job), this request's id, as the API always gives one.
 */
export function failedJobBody(error: { body: ErrorBody; requestId: string | null }, request: FastifyRequest): ErrorBody {
  return { ...error.body, request_id: error.requestId ?? request.id };
}

/** Maps fastify's own errors (body limit, bad JSON, bad media type) onto the envelope. */
export function describeFastifyError(error: { code?: string; statusCode?: number; message: string }): { status: number; message: string } {
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, message: 'Request exceeds the maximum size' };
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 400, message: 'content-type: expected application/json' };
  if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return { status: 400, message: 'body: expected a JSON object, got an empty body' };
  if (error.code === JSON_TOO_DEEP) return { status: 400, message: `body: ${error.message}` };
  if (error.statusCode === 400) return { status: 400, message: `body: invalid JSON (${cutText(error.message)})` };
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) return { status: error.statusCode, message: cutText(error.message) };
  return { status: 500, message: 'Internal server error' };
}

/** fastify's `frameworkErrors`: a URL that cannot be decoded (400) or a path parameter over its bound (414). */
export function frameworkError(error: { code?: string }, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(request, reply, 414, 'URI too long: a path parameter is longer than any valid one');
  return sendError(request, reply, 400, 'The request target is not a valid URL (malformed percent-encoding)');
}

/**
 * Node's `clientError`: the request could not be parsed, its headers were too large, or it did not arrive in time.
 * Answers in the envelope when nothing was sent yet, then closes the connection.
 */
export function clientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request header fields too large: the request line and headers must fit in 16 KiB']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request timed out: the whole request must arrive within the gateway request timeout']
        : [400, 'Malformed HTTP request'];
  const pending = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage; // an answer already under way
  if (socket.writable && pending?.headersSent !== true) {
    const body = JSON.stringify(anthropicError(status, message, newRequestId()));
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * The nesting depth of a JSON text, counted without parsing (brackets outside strings), stopping as soon as it
 * passes `max`: returns true when the text nests deeper than `max`.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i += 1; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      depth += 1;
      if (depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth -= 1;
  }
  return false;
}
