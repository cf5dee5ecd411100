// The read-only HTTP surface of `pgferry dump-restore --http`: GET /metrics (Prometheus), GET
// /status (the last progress event as JSON) and GET /healthz. It controls nothing, so it needs no
// token; node's own server, since three routes need no framework.
import http from 'node:http';
import type { DumpRestoreMetrics } from '../dump-restore-metrics.js';
import type { HttpAddress } from './address.js';

export async function startProgressServer(
  addr: HttpAddress,
  metrics: DumpRestoreMetrics,
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
    if (route === '/status')
      return send(200, 'application/json', JSON.stringify(metrics.last ?? { phase: 'preflight' }));
    if (route === '/metrics') {
      metrics.registry.metrics().then(
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
