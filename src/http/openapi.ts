// The OpenAPI 3.1 document served at GET /openapi.json, generated from what the server runs: the
// paths from API_ROUTES (the table server.ts registers its handlers by), the request bodies and
// answers from the zod schemas it validates with and types its answers by (OpenAPI 3.1 schemas
// are JSON Schema 2020-12, which z.toJSONSchema emits). Nothing here is written twice.
import { z } from 'zod';
import { API_ROUTES, type ApiResponse, COMMON_RESPONSES } from './api-routes.js';
import { API_SCHEMAS } from './api-schemas.js';

const COMPONENTS = '#/components/schemas/';

function components(): { names: Map<z.ZodType, string>; schemas: Record<string, unknown> } {
  const registry = z.registry<{ id: string }>();
  const names = new Map<z.ZodType, string>();
  for (const [id, schema] of Object.entries(API_SCHEMAS)) {
    registry.add(schema, { id });
    names.set(schema, id);
  }
  const { schemas } = z.toJSONSchema(registry, { uri: (id) => `${COMPONENTS}${id}` });
  // Each component is a schema inside the document, not a document of its own.
  const inner = Object.fromEntries(
    Object.entries(schemas).map(([id, { $schema: _s, $id: _i, ...schema }]) => [id, schema]),
  );
  return { names, schemas: inner };
}

function buildDocument() {
  const { names, schemas } = components();
  const ref = (schema: z.ZodType) => {
    const name = names.get(schema);
    if (!name) throw new Error('a route uses a schema missing from API_SCHEMAS');
    return { $ref: `${COMPONENTS}${name}` };
  };
  const response = (r: ApiResponse) => ({
    description: r.description,
    ...(r.headers && {
      headers: Object.fromEntries(
        Object.entries(r.headers).map(([h, description]) => [h, { description, schema: { type: 'string' } }]),
      ),
    }),
    content: r.schema
      ? { 'application/json': { schema: ref(r.schema) } }
      : {
          [r.mediaType ?? 'application/json']: {
            schema: r.mediaType === 'application/json' ? { type: 'object' } : { type: 'string' },
          },
        },
  });

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of API_ROUTES) {
    const params = [...route.url.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!);
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const body = 'body' in route ? route.body : undefined;
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.token && { security: [{ bearer: [] }] }),
      ...(params.length > 0 && {
        parameters: params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
      }),
      ...(body && {
        requestBody: { required: false, content: { 'application/json': { schema: ref(body) } } },
      }),
      responses: Object.fromEntries(
        Object.entries({ ...COMMON_RESPONSES, ...route.responses }).map(([code, r]) => [code, response(r)]),
      ),
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'pgferry',
      version: '1',
      description:
        'The API of `pgferry migrate --http`. Reads are open to anyone who can reach the port; control calls ' +
        "(and an operation's whole result) need `Authorization: Bearer <PGFERRY_API_TOKEN>`. Cutover and verify " +
        'answer 202 with an operation at once; its progress and result are in /status and at its Location. ' +
        'Errors are `{"error": {"code", "message", ...}}` with the HTTP status of the code (docs/errors.md). ' +
        'Bound to loopback, the API answers only requests whose Host header is that loopback address and port.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'PGFERRY_API_TOKEN' } },
      schemas,
    },
    paths,
  };
}

export const openApiDocument = buildDocument();
