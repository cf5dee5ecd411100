// GET /openapi.json is a valid OpenAPI 3.1 document generated from the routes the server registers
// (every one, and nothing else) and the zod schemas it answers with; the status page is served; a
// loopback-bound API refuses a Host header that names another host (DNS rebinding).
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { API_ROUTES } from '../../src/http/api-routes.js';
import { Status } from '../../src/http/api-schemas.js';
import type { ApiServerOptions } from '../../src/http/server.js';
import { buildApiApp } from '../../src/http/server.js';

const options = {
  token: null,
  control: { read: () => null },
  metrics: { error: () => {}, text: async () => '', contentType: 'text/plain' },
  log: pino({ level: 'silent' }),
} as unknown as Omit<ApiServerOptions, 'host' | 'port'>;

type Json = Record<string, unknown>;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const JSON_TYPES = ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'];

/** Every problem with the document under the OpenAPI 3.1 rules that matter to a client generator. */
function openApiProblems(doc: Json): string[] {
  const problems: string[] = [];
  const need = (ok: unknown, what: string) => {
    if (!ok) problems.push(what);
  };
  need(typeof doc.openapi === 'string' && /^3\.1\.\d+$/.test(doc.openapi), 'openapi is not 3.1.x');
  const info = doc.info as Json | undefined;
  need(typeof info?.title === 'string' && typeof info?.version === 'string', 'info.title/version missing');
  const paths = doc.paths as Record<string, Json> | undefined;
  need(paths && typeof paths === 'object', 'paths missing');
  const schemes = ((doc.components as Json)?.securitySchemes ?? {}) as Json;
  const ids = new Set<string>();
  for (const [path, item] of Object.entries(paths ?? {})) {
    need(path.startsWith('/'), `${path}: a path starts with /`);
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const [method, op] of Object.entries(item as Record<string, Json>)) {
      const at = `${method.toUpperCase()} ${path}`;
      need(METHODS.includes(method), `${at}: not an HTTP method`);
      need(typeof op.operationId === 'string', `${at}: no operationId`);
      need(!ids.has(op.operationId as string), `${at}: operationId ${op.operationId} twice`);
      ids.add(op.operationId as string);
      const params = ((op.parameters ?? []) as Json[]).filter((p) => p.in === 'path');
      need(
        JSON.stringify(params.map((p) => p.name).sort()) === JSON.stringify([...templated].sort()),
        `${at}: path parameters do not match the template`,
      );
      for (const p of params) need(p.required === true && p.schema, `${at}: parameter ${p.name} incomplete`);
      for (const s of (op.security ?? []) as Json[])
        for (const name of Object.keys(s)) need(name in schemes, `${at}: unknown security scheme ${name}`);
      const responses = op.responses as Record<string, Json> | undefined;
      need(responses && Object.keys(responses).length > 0, `${at}: no responses`);
      for (const [code, r] of Object.entries(responses ?? {})) {
        need(/^[1-5]\d\d$/.test(code), `${at} ${code}: not a status code`);
        need(typeof r.description === 'string', `${at} ${code}: no description`);
        const content = (r.content ?? {}) as Record<string, Json>;
        need(Object.keys(content).length > 0, `${at} ${code}: no content`);
        for (const [type, media] of Object.entries(content))
          need(media.schema && typeof media.schema === 'object', `${at} ${code} ${type}: no schema`);
      }
      const body = op.requestBody as Json | undefined;
      if (body) need((body.content as Json)?.['application/json'], `${at}: request body without JSON schema`);
    }
  }
  // Every $ref resolves inside the document; every type is a JSON Schema type.
  const resolve = (ref: string) =>
    ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<unknown>(
        (node, part) => (node as Json | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')],
        doc,
      );
  const walk = (node: unknown, at: string) => {
    if (Array.isArray(node)) {
      for (const [i, n] of node.entries()) walk(n, `${at}/${i}`);
    } else if (node && typeof node === 'object') {
      const o = node as Json;
      if (typeof o.$ref === 'string') {
        need(o.$ref.startsWith('#/'), `${at}: external $ref ${o.$ref}`);
        need(resolve(o.$ref) !== undefined, `${at}: $ref ${o.$ref} does not resolve`);
      }
      for (const t of [o.type].flat())
        if (typeof t === 'string' && /\/schemas?\//.test(`${at}/`) && !at.endsWith('/properties'))
          need(JSON_TYPES.includes(t), `${at}: type ${t}`);
      for (const [k, v] of Object.entries(o)) walk(v, `${at}/${k}`);
    }
  };
  walk(doc, '#');
  return problems;
}

describe('openapi.json', () => {
  it('is a valid OpenAPI 3.1 document of exactly the registered routes, generated from their schemas', async () => {
    const { app, routes } = buildApiApp(options);
    try {
      const res = await app.inject({ method: 'GET', url: '/openapi.json' });
      expect(res.statusCode).toBe(200);
      const doc = res.json();
      expect(openApiProblems(doc)).toEqual([]);

      // The served routes and the documented ones are the same, both ways.
      expect(routes.length).toBe(API_ROUTES.length);
      const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
        ([url, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${url}`),
      );
      const served = routes.map((r) => `${r.method} ${r.url.replace(/:([A-Za-z]+)/g, '{$1}')}`);
      expect(documented.sort()).toEqual(served.sort());

      const schemas = doc.components.schemas;
      for (const r of API_ROUTES) {
        const op = doc.paths[r.url.replace(/:([A-Za-z]+)/g, '{$1}')][r.method.toLowerCase()];
        expect(op.operationId).toBe(r.operationId);
        if (r.token) {
          expect(op.security, r.url).toEqual([{ bearer: [] }]);
          expect(op.responses['401'].content['application/json'].schema.$ref).toBe(
            '#/components/schemas/Error',
          );
        }
        // Every JSON answer is typed by a named schema, errors included.
        for (const [code, answer] of Object.entries(op.responses as Record<string, { content: Json }>)) {
          const json = answer.content['application/json'] as { schema: Json } | undefined;
          if (json && r.url !== '/openapi.json') expect(json.schema.$ref, `${r.url} ${code}`).toMatch(/^#\//);
        }
      }
      expect(doc.paths['/cutover'].post.responses['202'].headers.Location).toBeDefined();
      expect(schemas.OperationAnswer.properties.operation.$ref).toBe('#/components/schemas/Operation');
      expect(schemas.Operation.properties.state.enum).toEqual(['running', 'succeeded', 'failed']);
      expect(schemas.Error.properties.error.properties.side.enum).toEqual([
        'source',
        'target',
        'state',
        'config',
        'tool',
      ]);
      expect(schemas.Status.required).toEqual(
        expect.arrayContaining(['state', 'setup', 'phase', 'operations']),
      );
      expect(JSON.stringify(schemas.Status)).not.toContain('"user"');
      expect(schemas.CutoverBody).toMatchObject({
        type: 'object',
        additionalProperties: false,
        properties: { freeze: { enum: ['external', 'revoke', 'readonly'] } },
      });
    } finally {
      await app.close();
    }
  });

  it('answers /status in the documented shape before any state exists', async () => {
    const { app } = buildApiApp(options);
    try {
      const body = (await app.inject({ method: 'GET', url: '/status' })).json();
      expect(Status.parse(body)).toEqual(body);
    } finally {
      await app.close();
    }
  });

  it('serves the status page at / with a CSP that admits its inline script', async () => {
    const { app } = buildApiApp(options);
    try {
      const res = await app.inject({ method: 'GET', url: '/' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('text/html');
      expect(res.headers['content-security-policy']).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
      expect(res.body).toContain('<title>pgferry</title>');
      expect(res.body).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    } finally {
      await app.close();
    }
  });
});

describe('Host check while bound to loopback (DNS rebinding)', () => {
  it('answers only a loopback name or address with the bound port, on every route', async () => {
    const { app } = buildApiApp(options, { host: '127.0.0.1', port: () => 8123 });
    try {
      const get = (url: string, host: string) => app.inject({ method: 'GET', url, headers: { host } });
      for (const host of [
        '127.0.0.1:8123',
        'localhost:8123',
        'LOCALHOST:8123',
        '[::1]:8123',
        '127.0.0.2:8123',
      ])
        expect((await get('/healthz', host)).statusCode, host).toBe(200);
      for (const host of [
        'evil.example',
        'evil.example:8123',
        '127.0.0.1:80',
        '127.0.0.1',
        'localhost.:8123',
        '10.0.0.1:8123',
      ]) {
        for (const url of ['/healthz', '/status', '/', '/openapi.json', '/nowhere']) {
          const res = await get(url, host);
          expect(res.statusCode, `${host} ${url}`).toBe(421);
          expect(res.json().error.code).toBe('PGFERRY_API_MISDIRECTED');
        }
      }
      const post = await app.inject({
        method: 'POST',
        url: '/pause',
        headers: { host: 'evil.example:8123' },
      });
      expect(post.statusCode).toBe(421);
    } finally {
      await app.close();
    }
  });

  it('does not check Host when bound beyond loopback (a token guards control calls there)', async () => {
    const { app } = buildApiApp(options, { host: '0.0.0.0', port: () => 8123 });
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/healthz',
        headers: { host: 'pgferry.internal:8123' },
      });
      expect(res.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});
