// A TCP proxy in front of a test server that the test controls: cut() drops every connection in
// flight (a dead link mid-COPY or mid-batch), down() also refuses new ones until up().
import net from 'node:net';

export interface Proxy {
  readonly port: number;
  /** Destroys every connection through the proxy at once. */
  cut(): number;
  /** Cuts, and refuses new connections until up(). */
  down(): void;
  up(): void;
  /** Connections open now. */
  open(): number;
  /** A test cluster's URL, reaching it through this proxy. */
  via(url: string): string;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /**
   * Server-to-client bytes are passed on in pieces of these sizes in turn, one write each (a link
   * that cuts messages anywhere, their headers too).
   */
  fragments?: number[];
}

export async function startProxy(upstreamPort: number, opts: ProxyOptions = {}): Promise<Proxy> {
  const pairs = new Set<{ client: net.Socket; server: net.Socket }>();
  let refusing = false;
  const srv = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const server = net.connect(upstreamPort, '127.0.0.1');
    const pair = { client, server };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', drop).on('close', drop);
    server.on('error', drop).on('close', drop);
    client.pipe(server);
    if (opts.fragments) {
      // One piece per turn of the event loop, so that the client's reads see pieces, not a stream
      // the kernel joined again.
      const sizes = opts.fragments;
      let turn = 0;
      const pieces: Buffer[] = [];
      const next = () => {
        const piece = pieces.shift();
        if (!piece) return;
        client.write(piece);
        setImmediate(next);
      };
      server.on('data', (data: Buffer) => {
        const idle = pieces.length === 0;
        for (let i = 0; i < data.length; ) {
          const size = sizes[turn++ % sizes.length]!;
          pieces.push(data.subarray(i, i + size));
          i += size;
        }
        if (idle) next();
      });
    } else server.pipe(client);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  const cut = () => {
    const n = pairs.size;
    for (const p of [...pairs]) {
      // resetAndDestroy sends RST, as a link that dies does; destroy() would send a clean FIN.
      p.client.resetAndDestroy();
      p.server.resetAndDestroy();
    }
    pairs.clear();
    return n;
  };
  return {
    port,
    cut,
    down() {
      refusing = true;
      cut();
    },
    up() {
      refusing = false;
    },
    open: () => pairs.size,
    via: (url) => url.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`),
    close: () =>
      new Promise<void>((resolve) => {
        cut();
        srv.close(() => resolve());
      }),
  };
}
