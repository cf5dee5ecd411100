// The read-only HTTP surface of `pgferry dump-restore --http` and `walg status --http`: GET
// /metrics (Prometheus), GET /status (JSON) and GET /healthz. It controls nothing, so it needs no
// token; node's own server, since three routes need no framework.
import http from 'node:http';
import type { Registry } from 'prom-client';
import type { HttpAddress } from './address.js';

export interface ProgressSource {
  registry: Registry;
  /** What GET /status answers, read at each request. */
  status: () => Promise<unknown> | unknown;
  /** Brings the metrics up to date before a scrape. */
  refresh?: () => Promise<void>;
}

export async function startProgressServer(
  addr: HttpAddress,
  metrics: ProgressSource,
): Promise<{ close: () => Promise<void>; port: number }> {
  const server = http.createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const route = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET')
      return send(405, 'application/json', '{"error":{"code":"PGFERRY_API_NOT_FOUND","message":"GET only"}}');
    if (route === '/healthz') return send(200, 'application/json', '{"ok":true}');
    if (route === '/status') {
      Promise.resolve(metrics.status()).then(
        (value) => send(200, 'application/json', JSON.stringify(value)),
        (err: Error) => send(500, 'application/json', JSON.stringify({ error: { message: err.message } })),
      );
      return;
    }
    if (route === '/metrics') {
      Promise.resolve(metrics.refresh?.())
        .then(() => metrics.registry.metrics())
        .then(
          (text) => send(200, metrics.registry.contentType, text),
          (err: Error) => send(500, 'text/plain', err.message),
        );
      return;
    }
    send(
      404,
      'application/json',
      `{"error":{"code":"PGFERRY_API_NOT_FOUND","message":"no route ${JSON.stringify(route).slice(1, -1)}"}}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
