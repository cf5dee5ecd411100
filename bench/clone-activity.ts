// Where a clone's time goes, seen from the servers: pg_stat_activity on the source and the target,
// sampled every 250 ms during a timed run from one connection per side opened beforehand (a cheap
// catalog read; every run is sampled alike). Each sample of each backend counts under what it was
// doing: "CPU" when active without a wait event (running, or waiting on something PostgreSQL does
// not instrument), else its wait event, with the statement's first words; "idle" and "idle in
// transaction" as such. Counts × (run time / samples) = backend-seconds: a slow sample is skipped,
// and the others stand for its time.
import pg from 'pg';

export const SAMPLE_MS = 250;

export interface ActivityProfile {
  intervalMs: number;
  samples: number;
  seconds: number;
  /** "side: what (statement)" → backend-seconds */
  backendSeconds: Record<string, number>;
}

interface Side {
  name: 'source' | 'target';
  url: string;
  db: string;
}

const SAMPLE_SQL = `
  SELECT backend_type, state, wait_event_type, wait_event, left(ltrim(query), 60) AS query
    FROM pg_stat_activity
   WHERE datname = $1 AND pid <> pg_backend_pid()`;

function statementOf(query: string | null): string {
  const words = (query ?? '').replace(/^\(+/, '').split(/\s+/).filter(Boolean);
  const first = (words[0] ?? '').toUpperCase();
  const second = (words[1] ?? '').toUpperCase();
  if (['CREATE', 'ALTER', 'DROP'].includes(first))
    return `${first} ${second === 'UNIQUE' ? 'INDEX' : second}`;
  return first || '?';
}

interface Row {
  backend_type: string | null;
  state: string | null;
  wait_event_type: string | null;
  wait_event: string | null;
  query: string | null;
}

function keyOf(side: string, r: Row): string | null {
  const who = r.backend_type === 'client backend' ? '' : `${r.backend_type} `;
  if (r.state === 'idle') return `${side}: ${who}idle`;
  if (r.state?.startsWith('idle in transaction')) return `${side}: ${who}idle in transaction`;
  if (r.state !== 'active' && r.backend_type === 'client backend') return null;
  const what = r.wait_event ? `${r.wait_event_type}:${r.wait_event}` : 'CPU';
  return `${side}: ${who}${what} (${statementOf(r.query)})`;
}

export class ActivitySampler {
  private readonly counts = new Map<string, number>();
  private samples = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly startedAt = performance.now();

  private constructor(private readonly sides: { side: Side; client: pg.Client }[]) {}

  static async start(sides: Side[]): Promise<ActivitySampler> {
    const open = await Promise.all(
      sides.map(async (side) => {
        const client = new pg.Client({ connectionString: side.url, application_name: 'bench-sampler' });
        await client.connect();
        return { side, client };
      }),
    );
    const sampler = new ActivitySampler(open);
    sampler.timer = setInterval(() => void sampler.sample(), SAMPLE_MS);
    return sampler;
  }

  private async sample(): Promise<void> {
    if (this.busy) return; // a slow sample is skipped, not queued
    this.busy = true;
    try {
      const results = await Promise.all(
        this.sides.map(({ side, client }) =>
          client.query<Row>(SAMPLE_SQL, [side.db]).then((r) => ({ side, r })),
        ),
      );
      this.samples++;
      for (const { side, r } of results) {
        for (const row of r.rows) {
          const key = keyOf(side.name, row);
          if (key) this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
        }
      }
    } catch {
      // a database dropped or recreated under the sampler: that sample is lost, nothing else
    } finally {
      this.busy = false;
    }
  }

  private stopped: Promise<ActivityProfile> | undefined;

  /** Stops sampling and closes the connections; every call returns the same profile. */
  stop(): Promise<ActivityProfile> {
    this.stopped ??= this.finish();
    return this.stopped;
  }

  private async finish(): Promise<ActivityProfile> {
    clearInterval(this.timer);
    const seconds = (performance.now() - this.startedAt) / 1000;
    await Promise.all(this.sides.map(({ client }) => client.end().catch(() => {})));
    const perSample = this.samples > 0 ? seconds / this.samples : 0;
    const backendSeconds: Record<string, number> = {};
    for (const [k, n] of [...this.counts].sort((a, b) => b[1] - a[1])) {
      backendSeconds[k] = Math.round(n * perSample * 100) / 100;
    }
    return { intervalMs: SAMPLE_MS, samples: this.samples, seconds, backendSeconds };
  }
}
