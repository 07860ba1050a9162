/**
 * Error kernel. Each room declares its codes in one table (`defineErrors`); every thrown error is a
 * `HalflifeError` whose HTTP status comes from that table, never chosen inline.
 */

/** Who is at fault, which decides the route: dead-letter, retry with backoff, or fail loudly. */
export type ErrorDomain = 'user' | 'external' | 'internal';

export interface ErrorSpec {
  /** HTTP status used when the error reaches the API. */
  readonly status: number;
  /** Message template; `{name}` placeholders are filled from the error's details. */
  readonly message: string;
  readonly domain: ErrorDomain;
  readonly retryable: boolean;
}

export type ErrorTable<C extends string> = { readonly [K in C]: ErrorSpec };

const registry = new Map<string, ErrorSpec>();

/**
 * Declares a room's error codes. Codes are project-unique: declaring one twice throws at import time,
 * so two rooms can never give the same code two meanings.
 */
export function defineErrors<C extends string>(table: ErrorTable<C>): ErrorTable<C> {
  for (const [code, spec] of Object.entries(table) as [string, ErrorSpec][]) {
    const known = registry.get(code);
    if (known !== undefined && known !== spec) throw new Error(`error code ${code} declared twice`);
    registry.set(code, spec);
  }
  return table;
}

/** Every declared code with its spec (for docs and the docs test). */
export function allErrorCodes(): ReadonlyMap<string, ErrorSpec> {
  return registry;
}

export function errorSpec(code: string): ErrorSpec | undefined {
  return registry.get(code);
}

function fill(template: string, details: Record<string, unknown> | undefined): string {
  if (details === undefined) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in details ? String(details[name]) : whole,
  );
}

export class HalflifeError extends Error {
  readonly code: string;
  readonly status: number;
  readonly domain: ErrorDomain;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  /**
   * @param code a code declared with `defineErrors`
   * @param details values for the message template, also returned to API clients as `details`
   * @param message overrides the template when the caller has a more precise sentence
   */
  constructor(
    code: string,
    details?: Record<string, unknown>,
    options?: { message?: string; cause?: unknown },
  ) {
    const spec = registry.get(code) ?? registry.get('INTERNAL')!;
    super(options?.message ?? fill(spec.message, details), { cause: options?.cause });
    this.name = 'HalflifeError';
    this.code = code;
    this.status = spec.status;
    this.domain = spec.domain;
    this.retryable = spec.retryable;
    this.details = details;
  }
}

/** Codes shared by every room; a room's own codes live in its errors.ts. */
export const CoreErrors = defineErrors({
  SQL_TIMEOUT: {
    status: 400,
    message: 'the query ran for {timeoutMs} ms, its time limit ({setting}), and was stopped; {hint}',
    domain: 'user',
    retryable: false,
  },
  INVALID_QUERY: {
    status: 400,
    message: 'query parameter {name} is invalid: {reason}',
    domain: 'user',
    retryable: false,
  },
  INVALID_REQUEST: {
    status: 400,
    message: 'the request is invalid: {reason}',
    domain: 'user',
    retryable: false,
  },
  INTERNAL: { status: 500, message: 'internal error: {reason}', domain: 'internal', retryable: false },
  FORBIDDEN: {
    status: 403,
    message: 'this API key may not do that: {reason}',
    domain: 'user',
    retryable: false,
  },
  COMPONENT_CLOSED: {
    status: 503,
    message: '{component} is closed',
    domain: 'internal',
    retryable: true,
  },
});
