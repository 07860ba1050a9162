import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthMode } from '../config/index.js';
import { HalflifeError } from '../core/index.js';
import type { ApiKeyInfo, KeyStore, Scope } from './keys.js';
import './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key that authenticated the request (undefined while authentication is off). */
    apiKey: ApiKeyInfo | undefined;
  }
}

export interface AuthOptions {
  readonly keys: KeyStore;
  readonly mode: AuthMode;
  /** The address the server listens on: off loopback, `auto` requires keys even while none exists. */
  readonly host: string;
}

type Access = Scope | 'public';

/**
 * The scope a route needs, from its method and pattern. One table instead of an option on every route: a route
 * added later without an entry here needs `admin` (deny by default).
 */
export function accessOf(method: string, route: string | undefined): Access {
  if (route === '/healthz' || route === '/readyz') return 'public';
  if (route === '/metrics' && method === 'GET') return 'read';
  if (route === undefined) return 'admin';
  if (method === 'POST' && route === '/v1/events') return 'write';
  if (method === 'POST' && (route === '/v1/query' || route === '/v1/sql')) return 'read';
  if ((method === 'GET' || method === 'HEAD') && route.startsWith('/v1/') && !route.startsWith('/v1/keys')) return 'read';
  return 'admin';
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Whether requests need a key now: always with `on` or off loopback, with `auto` once any key has existed. */
export function authRequired(o: AuthOptions): boolean {
  return o.mode === 'on' || (o.mode === 'auto' && (o.keys.required || !isLoopback(o.host)));
}

/** The key a request carries: `Authorization: Bearer <key>`, or HTTP Basic with the key as user name (Segment's way). */
export function credentials(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const space = header.indexOf(' ');
  if (space < 0) return undefined;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer') return value;
  if (scheme === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? decoded : decoded.slice(0, colon);
  }
  return undefined;
}

/**
 * Authentication, scopes, origins and CORS. CORS preflights carry no key, so they are answered for the origins any
 * write key allows; the request that follows is then checked against its own key's origins.
 */
export function registerAuth(app: FastifyInstance, o: AuthOptions): void {
  app.decorateRequest('apiKey', undefined);
  void app.register(cors, {
    origin: (origin, cb) => cb(null, origin !== undefined && o.keys.origins().has(origin) ? origin : false),
    methods: ['GET', 'POST'],
    allowedHeaders: ['authorization', 'content-type', 'x-halflife-priority'],
    maxAge: 600,
  });
  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    if (request.method === 'OPTIONS') return; // a CORS preflight, answered by the plugin
    const access = accessOf(request.method, request.routeOptions.url);
    if (access === 'public' || !authRequired(o)) return;
    const token = credentials(request.headers.authorization);
    const key = token === undefined ? undefined : o.keys.verify(token);
    if (key === undefined) {
      void reply.header('www-authenticate', 'Bearer realm="halflife"');
      throw new HalflifeError('UNAUTHENTICATED');
    }
    if (!key.scopes.includes(access) && !key.scopes.includes('admin')) {
      throw new HalflifeError('FORBIDDEN', { reason: `it has the scope ${key.scopes.join(', ')} and this needs ${access}` });
    }
    const origin = request.headers.origin;
    if (key.origins !== null && origin !== undefined && !key.origins.includes(origin)) {
      throw new HalflifeError('FORBIDDEN', { reason: `it may not be used from origin ${origin}` });
    }
    request.apiKey = key;
  });
}
