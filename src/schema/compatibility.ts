/**
 * Backward compatibility between two JSON Schemas: may the new version reject an event that the previous one
 * accepted? Returns the reasons it may (empty = compatible). The check is structural and conservative: where
 * it cannot prove that a keyword still accepts everything (pattern, allOf, $ref, ...), it reports a reason.
 *
 * One deliberate leniency: adding an optional property to an open object is allowed, although strictly the old
 * schema accepted any value under that name; refusing it would forbid the most common evolution of all.
 */
type S = Record<string, unknown> | boolean;

const NUMERIC_LOWER = ['minimum', 'exclusiveMinimum', 'minLength', 'minItems', 'minProperties', 'minContains'] as const;
const NUMERIC_UPPER = ['maximum', 'exclusiveMaximum', 'maxLength', 'maxItems', 'maxProperties', 'maxContains'] as const;
/** Keywords compared only for equality: any change may narrow what is accepted. */
const OPAQUE = [
  'allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else', '$ref', '$dynamicRef', 'dependentRequired',
  'dependentSchemas', 'patternProperties', 'propertyNames', 'contains', 'unevaluatedProperties',
  'unevaluatedItems', '$defs', 'definitions', 'contentMediaType', 'contentEncoding',
] as const;
const HANDLED = new Set<string>([
  'type', 'enum', 'const', 'required', 'properties', 'additionalProperties', 'items', 'prefixItems',
  'uniqueItems', 'multipleOf', 'pattern', 'format', ...NUMERIC_LOWER, ...NUMERIC_UPPER, ...OPAQUE,
]);

export function backwardIncompatibilities(previous: unknown, next: unknown): string[] {
  const reasons: string[] = [];
  compare(previous as S, next as S, '', reasons);
  return reasons;
}

function at(path: string): string {
  return path === '' ? 'the event' : path;
}

function compare(prev: S, next: S, path: string, out: string[]): void {
  if (deepEqual(prev, next)) return;
  if (next === true || prev === false) return;
  if (next === false) {
    out.push(`${at(path)}: the new schema is false, which rejects everything`);
    return;
  }
  if (prev === true) {
    const keys = Object.keys(next).filter((k) => HANDLED.has(k));
    if (keys.length > 0) out.push(`${at(path)}: previously anything was accepted, now ${keys.join(', ')} apply`);
    return;
  }
  compareTypes(prev, next, path, out);
  compareValues(prev, next, path, out);
  compareBounds(prev, next, path, out);
  compareObject(prev, next, path, out);
  compareArray(prev, next, path, out);
  for (const kw of OPAQUE) {
    if (next[kw] !== undefined && !deepEqual(prev[kw], next[kw])) {
      out.push(`${at(path)}: "${kw}" changed; it cannot be proven to accept what it accepted before`);
    }
  }
}

function types(s: Record<string, unknown>): Set<string> | undefined {
  if (s.type === undefined) return undefined;
  return new Set(Array.isArray(s.type) ? (s.type as string[]) : [s.type as string]);
}

function compareTypes(prev: Record<string, unknown>, next: Record<string, unknown>, path: string, out: string[]): void {
  const nt = types(next);
  if (nt === undefined) return;
  const pt = types(prev);
  if (pt === undefined) {
    out.push(`${at(path)}: type narrowed from any to ${[...nt].join(' | ')}`);
    return;
  }
  for (const t of pt) {
    const ok = nt.has(t) || (t === 'integer' && nt.has('number'));
    if (!ok) out.push(`${at(path)}: type narrowed: ${t} is no longer accepted (now ${[...nt].join(' | ')})`);
  }
}

function compareValues(prev: Record<string, unknown>, next: Record<string, unknown>, path: string, out: string[]): void {
  const allowedBefore = prev.const !== undefined ? [prev.const] : (prev.enum as unknown[] | undefined);
  if (next.enum !== undefined) {
    const now = next.enum as unknown[];
    if (allowedBefore === undefined) out.push(`${at(path)}: enum added: values outside ${JSON.stringify(now)} are now rejected`);
    else {
      const lost = allowedBefore.filter((v) => !now.some((n) => deepEqual(n, v)));
      if (lost.length > 0) out.push(`${at(path)}: enum narrowed: ${lost.map((v) => JSON.stringify(v)).join(', ')} no longer accepted`);
    }
  }
  if (next.const !== undefined) {
    if (allowedBefore === undefined || allowedBefore.some((v) => !deepEqual(v, next.const))) {
      out.push(`${at(path)}: const ${JSON.stringify(next.const)} now required`);
    }
  }
}

function compareBounds(prev: Record<string, unknown>, next: Record<string, unknown>, path: string, out: string[]): void {
  for (const kw of NUMERIC_LOWER) {
    const n = next[kw] as number | undefined;
    const p = prev[kw] as number | undefined;
    if (n !== undefined && (p === undefined || n > p)) out.push(`${at(path)}: ${kw} tightened from ${p ?? 'none'} to ${n}`);
  }
  for (const kw of NUMERIC_UPPER) {
    const n = next[kw] as number | undefined;
    const p = prev[kw] as number | undefined;
    if (n !== undefined && (p === undefined || n < p)) out.push(`${at(path)}: ${kw} tightened from ${p ?? 'none'} to ${n}`);
  }
  const nm = next.multipleOf as number | undefined;
  const pm = prev.multipleOf as number | undefined;
  if (nm !== undefined && (pm === undefined || !Number.isInteger(pm / nm))) {
    out.push(`${at(path)}: multipleOf ${nm} now required (was ${pm ?? 'none'})`);
  }
  for (const kw of ['pattern', 'format'] as const) {
    if (next[kw] !== undefined && next[kw] !== prev[kw]) {
      out.push(`${at(path)}: ${kw} changed from ${JSON.stringify(prev[kw] ?? null)} to ${JSON.stringify(next[kw])}`);
    }
  }
  if (next.uniqueItems === true && prev.uniqueItems !== true) out.push(`${at(path)}: uniqueItems now required`);
}

function compareObject(prev: Record<string, unknown>, next: Record<string, unknown>, path: string, out: string[]): void {
  const prevReq = new Set((prev.required as string[] | undefined) ?? []);
  for (const r of (next.required as string[] | undefined) ?? []) {
    if (!prevReq.has(r)) out.push(`${at(path)}: new required field "${r}"`);
  }
  const pp = (prev.properties ?? {}) as Record<string, S>;
  const np = (next.properties ?? {}) as Record<string, S>;
  const nextAdditional = (next.additionalProperties ?? true) as S;
  const prevAdditional = (prev.additionalProperties ?? true) as S;
  for (const [name, ps] of Object.entries(pp)) {
    const child = path === '' ? name : `${path}.${name}`;
    if (name in np) compare(ps, np[name], child, out);
    else if (nextAdditional === false) out.push(`${child}: property removed while additionalProperties is false`);
    else compare(ps, nextAdditional, child, out);
  }
  if (prevAdditional !== false && !deepEqual(prevAdditional, nextAdditional)) {
    if (nextAdditional === false) out.push(`${at(path)}: additionalProperties is now false: unknown fields are rejected`);
    else compare(prevAdditional, nextAdditional, `${at(path)} (additional properties)`, out);
  }
  for (const [name, ns] of Object.entries(np)) {
    // An added property was previously covered by additionalProperties; only a closed model makes it new.
    if (!(name in pp) && prevAdditional !== true && prevAdditional !== false) {
      compare(prevAdditional, ns, path === '' ? name : `${path}.${name}`, out);
    }
  }
}

function compareArray(prev: Record<string, unknown>, next: Record<string, unknown>, path: string, out: string[]): void {
  const ppi = (prev.prefixItems ?? []) as S[];
  const npi = (next.prefixItems ?? []) as S[];
  for (let i = 0; i < npi.length; i++) compare(ppi[i] ?? ((prev.items ?? true) as S), npi[i], `${path}[${i}]`, out);
  if (next.items !== undefined) compare((prev.items ?? true) as S, next.items as S, `${path}[]`, out);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
