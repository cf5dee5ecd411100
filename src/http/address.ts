// The API's bind address, HOST:PORT ([IPv6]:PORT, or a port alone for loopback), read in one place
// for `migrate --http` / PGFERRY_HTTP and for the container's health check (bin/healthcheck.js),
// which imports nothing else so that a probe every few seconds stays cheap.

export interface HttpAddress {
  host: string;
  port: number;
}

/** HOST:PORT → { host, port }, or null when the text is not one. */
export function parseHttpAddress(text: string): HttpAddress | null {
  const m = /^(?:\[?([^\]]*)\]?:)?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) return null;
  return { host: m[1] || '127.0.0.1', port };
}

/** The URL this machine reaches an API bound at `addr` by: an unspecified bind address (0.0.0.0,
 *  ::) listens on loopback too. */
export function localUrl(addr: HttpAddress): string {
  const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}
