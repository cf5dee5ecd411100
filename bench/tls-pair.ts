// The TLS bench's servers and its check: two TLS-capable clusters that accept plain TCP too (the
// cluster harness's TLS clusters refuse it), and a sampler of pg_stat_ssl that tells which kind of
// session a run really used.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { type Cluster, startCluster } from '../test/support/cluster.js';
import type { TestCerts } from '../test/support/tls.js';

export type Mode = 'plain' | 'tls';

/** What pg_stat_ssl showed of the run's sessions (polled every 100 ms on both servers). */
export interface SslSeen {
  tlsSessions: number;
  plainSessions: number;
  /** `TLSv1.3 TLS_AES_256_GCM_SHA384`, … */
  ciphers: string[];
}

/** Two TLS-capable clusters whose pg_hba.conf accepts TLS and plain TCP (startCluster's is TLS-only). */
export async function dualPair(certs: TestCerts): Promise<Cluster[]> {
  const pair = await Promise.all([0, 1].map(() => startCluster(15, { tls: certs.signed })));
  for (const c of pair) {
    fs.writeFileSync(
      path.join(c.dataDir, 'pg_hba.conf'),
      'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n',
    );
    await c.query('SELECT pg_reload_conf()');
    for (let i = 0; ; i++) {
      const probe = new pg.Client({ connectionString: c.url({ sslmode: 'disable' }) });
      try {
        await probe.connect();
        await probe.end();
        break;
      } catch (err) {
        await probe.end().catch(() => {});
        if (i > 50) throw new Error(`plain TCP still refused after the pg_hba.conf reload: ${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  return pair;
}

/**
 * Polls pg_stat_ssl for pgferry's sessions on these databases (and the pg_dump/psql it runs; not the
 * bench's own checks, which connect plainly) until stopped.
 */
export function watchSsl(clusters: Cluster[], dbs: string[]): { stop: () => Promise<SslSeen> } {
  const seen: SslSeen = { tlsSessions: 0, plainSessions: 0, ciphers: [] };
  const clients = clusters.map((c) => new pg.Client({ connectionString: c.url({ sslmode: 'disable' }) }));
  let running = true;
  const loop = async (c: pg.Client) => {
    await c.connect();
    while (running) {
      const { rows } = await c.query<{ ssl: boolean; what: string | null; n: number }>(
        `SELECT s.ssl, s.version || ' ' || s.cipher AS what, count(*)::int AS n
           FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.backend_type = 'client backend' AND a.datname = ANY($1)
            AND a.application_name IN ('pgferry', 'pg_dump', 'pg_restore', 'psql')
          GROUP BY 1, 2`,
        [dbs],
      );
      for (const r of rows) {
        if (r.ssl) seen.tlsSessions = Math.max(seen.tlsSessions, r.n);
        else seen.plainSessions = Math.max(seen.plainSessions, r.n);
        if (r.what && !seen.ciphers.includes(r.what)) seen.ciphers.push(r.what);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const loops = clients.map((c) => loop(c).catch(() => {}));
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      return seen;
    },
  };
}

/** A run whose sessions were not what its URLs asked for measures the wrong thing: stop. */
export function checkSsl(what: string, mode: Mode, seen: SslSeen): void {
  const wrong = mode === 'tls' ? seen.plainSessions : seen.tlsSessions;
  if (wrong > 0)
    throw new Error(`${what} (${mode}): pg_stat_ssl showed ${wrong} session(s) of the other kind`);
}
