/**
 * `@tollgate/limiter/internal`: helpers the other Tollgate packages and services share. Not part of the public API:
 * it may change in any release.
 */
export { toError } from './errors.js';
export { ECHO_CHARS_MAX, cutText, describeZodError, formatValue } from './options.js';
