// Request bodies: read with a size cap (a client cannot make the server buffer without limit),
// parsed as a JSON object, and fields checked with messages that name the field and the fix.
import type { IncomingMessage } from 'node:http';
import { countRejection } from '../lib/observability/rejections';
import { ApiError } from './errors';

export type JsonObject = Record<string, unknown>;

const BODY_REJECTION: Record<number, string> = { 413: 'too-large', 415: 'content-type' };

/** Every refusal of a body is counted (osr_input_rejections_total{parser="http-body"}). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<JsonObject> {
  try {
    return await parseJsonBody(req, maxBytes);
  } catch (err) {
    if (err instanceof ApiError)
      countRejection('http-body', BODY_REJECTION[err.status] ?? 'malformed', err.message);
    throw err;
  }
}

async function parseJsonBody(req: IncomingMessage, maxBytes: number): Promise<JsonObject> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    // The client hung up or broke the framing: nothing to parse, and nothing of it is kept.
    throw new ApiError(
      400,
      `the body ended early after ${size} bytes (${(err as Error).message}); send it whole`,
      'invalid',
    );
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  const type = String(req.headers['content-type'] ?? 'application/json');
  if (!/^application\/(.+\+)?json\b/i.test(type))
    throw new ApiError(
      415,
      `the body must be JSON: send Content-Type: application/json (got ${type})`,
      'invalid',
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ApiError(
      400,
      `the body is not valid JSON (${(err as Error).message}); send a JSON object`,
      'invalid',
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new ApiError(400, 'the body must be a JSON object, for example {"point": "latest"}', 'invalid');
  return parsed as JsonObject;
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `the body is larger than ${maxBytes} bytes (api.maxBodyBytes)`, 'invalid');
}

function invalid(field: string, fix: string): ApiError {
  return new ApiError(400, `field "${field}": ${fix}`, 'invalid');
}

/** Refuses fields the route does not know, so a misspelt one is not silently ignored. */
export function onlyFields(body: JsonObject, allowed: string[]): void {
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length)
    throw invalid(
      unknown[0] as string,
      `unknown field; this route accepts ${allowed.length ? allowed.map((a) => `"${a}"`).join(', ') : 'no fields'}`,
    );
}

export function optionalString(body: JsonObject, field: string, fix: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw invalid(field, fix);
  return value;
}

export function requiredString(body: JsonObject, field: string, fix: string): string {
  const value = optionalString(body, field, fix);
  if (value === undefined) throw invalid(field, `missing; ${fix}`);
  return value;
}

/** A non-empty list of non-empty strings, or nothing. */
export function optionalStringList(body: JsonObject, field: string, fix: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.length || value.some((v) => typeof v !== 'string' || !v.trim()))
    throw invalid(field, fix);
  return value as string[];
}

export function optionalBoolean(body: JsonObject, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalid(field, 'must be true or false');
  return value;
}

export function optionalEnum<T extends string>(
  body: JsonObject,
  field: string,
  values: readonly T[],
): T | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !values.includes(value as T))
    throw invalid(field, `must be one of ${values.map((v) => `"${v}"`).join(', ')}`);
  return value as T;
}

/** A duration as seconds (a number) or text like "30s", "5m", "1h", "2d". */
export function optionalDuration(
  body: JsonObject,
  field: string,
  parse: (text: string) => number,
): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    try {
      return parse(value);
    } catch {
      // fall through to the message that names the field
    }
  }
  throw invalid(field, 'must be a whole number of seconds or a duration like "30s", "5m", "1h", "2d"');
}
