// GET /openapi.json describes every route server.ts registers, and the status page is served.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { ApiServerOptions } from '../../src/http/server.js';
import { buildApiApp } from '../../src/http/server.js';

const options = {
  token: null,
  control: { read: () => null },
  metrics: { error: () => {}, text: async () => '', contentType: 'text/plain' },
  log: pino({ level: 'silent' }),
} as unknown as Omit<ApiServerOptions, 'host' | 'port'>;

describe('openapi.json', () => {
  it('documents every registered route, with the bearer scheme on the control calls', async () => {
    const { app, routes } = buildApiApp(options);
    try {
      const res = await app.inject({ method: 'GET', url: '/openapi.json' });
      expect(res.statusCode).toBe(200);
      const doc = res.json();
      expect(doc.openapi).toMatch(/^3\.1\./);
      expect(routes.length).toBeGreaterThan(8);
      const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
        ([url, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${url}`),
      );
      expect(documented.sort()).toEqual(routes.map((r) => `${r.method} ${r.url}`).sort());
      for (const r of routes.filter((r) => r.method === 'POST')) {
        const op = doc.paths[r.url].post;
        expect(op.security, r.url).toEqual([{ bearer: [] }]);
        expect(op.responses['401'].content['application/json'].schema.$ref).toBe(
          '#/components/schemas/Error',
        );
      }
      expect(doc.paths['/cutover'].post.requestBody.content['application/json'].schema).toMatchObject({
        type: 'object',
        additionalProperties: false,
        properties: { freeze: { enum: ['external', 'revoke', 'readonly'] } },
      });
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
