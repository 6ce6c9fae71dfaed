import { anthropicError } from '@tollgate/queue';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Sends Anthropic's error envelope (anthropic-api.md §2) with the request's id. */
export function sendError(request: FastifyRequest, reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).type('application/json').send(anthropicError(status, message, request.id));
}

/** Maps fastify's own errors (body limit, bad JSON, bad media type) onto the envelope. */
export function describeFastifyError(error: { code?: string; statusCode?: number; message: string }): { status: number; message: string } {
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, message: 'Request exceeds the maximum size' };
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 400, message: 'content-type: expected application/json' };
  if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return { status: 400, message: 'body: expected a JSON object, got an empty body' };
  if (error.statusCode === 400) return { status: 400, message: `body: invalid JSON (${error.message})` };
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) return { status: error.statusCode, message: error.message };
  return { status: 500, message: 'Internal server error' };
}
