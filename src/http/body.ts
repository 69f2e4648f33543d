import type { HttpRequest } from '@azure/functions';
import type { z } from 'zod';
import { BillingError, type FieldIssue, validationError } from '../billing/errors.js';

/**
 * Reads a JSON body and validates it with a strict schema: malformed JSON, a wrong content type, an
 * oversized body and unknown fields each get their own precise 4xx before any work is done.
 */
export async function readJson<T>(
  request: HttpRequest,
  schema: z.ZodType<T>,
  maxBytes: number,
  options: { readonly optional?: boolean } = {},
): Promise<T> {
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const contentType = request.headers.get('content-type') ?? '';
  // An optional body may be left out entirely (no content type, nothing sent): it reads as `{}`.
  if (options.optional && contentType === '' && declared === 0) {
    const bytes = await request.arrayBuffer();
    if (bytes.byteLength === 0)
      return parseInput(schema, {}, 'invalid_body', 'The body does not match the expected shape.');
  }
  if (!/^application\/([\w.-]+\+)?json\s*(;|$)/i.test(contentType)) {
    throw new BillingError(
      'unsupported_media_type',
      'content_type_not_json',
      'Send the body as application/json.',
    );
  }
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (text.trim() === '') throw validationError('body_required', 'A JSON body is required.');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw validationError(
      'malformed_json',
      `The body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return parseInput(schema, json, 'invalid_body', 'The body does not match the expected shape.');
}

/** Validates any untrusted value (body, route params, query), listing every problem with its path. */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown, code: string, message: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const details: FieldIssue[] = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message:
      issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message,
  }));
  throw validationError(
    code,
    `${message} ${details.map((d) => `${d.path || '(body)'}: ${d.message}`).join('; ')}`,
    details,
  );
}

function tooLarge(maxBytes: number) {
  return new BillingError('payload_too_large', 'body_too_large', `The body exceeds ${maxBytes} bytes.`);
}
