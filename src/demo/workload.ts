// The demo's application: a few writers doing what a shop does, as the unprivileged `shop_app`
// role, until stopped. Every kind of change replay must get right is in it: inserts, updates,
// deletes (cascading to order lines), a primary-key change (a renumbered customer, cascading to
// its orders), and rows moving between partitions.
import pg from 'pg';
import type { ShopSize } from './shop.js';

export interface WorkloadStats {
  /** Committed write transactions. */
  transactions: number;
  /** Transactions that failed (deadlocks, unique clashes: a real application retries them). */
  failed: number;
}

export interface ShopWorkload {
  stats(): WorkloadStats;
  /** Stops the writers after their current transaction and closes their connections. */
  stop(): Promise<WorkloadStats>;
}

const rnd = (n: number) => 1 + Math.floor(Math.random() * n);

type Operation = (c: pg.PoolClient, size: ShopSize) => Promise<unknown>;

const OPERATIONS: Operation[] = [
  // Place an order with one to three lines.
  async (c, size) => {
    await c.query('BEGIN');
    const { rows } = await c.query<{ id: string }>(
      'INSERT INTO orders (customer_id, total) VALUES ($1, 0) RETURNING id',
      [rnd(size.customers)],
    );
    const id = rows[0]!.id;
    await c.query(
      `INSERT INTO order_items (order_id, line, sku, qty, price)
         SELECT $1, l, 'SKU-' || lpad((random() * 5000)::int::text, 5, '0'), 1 + l % 3, round((random() * 90 + 1)::numeric, 2)
           FROM generate_series(1, $2::int) l`,
      [id, rnd(3)],
    );
    await c.query(
      'UPDATE orders SET total = (SELECT sum(qty * price) FROM order_items WHERE order_id = $1) WHERE id = $1',
      [id],
    );
    await c.query('COMMIT');
  },
  (c, size) =>
    c.query(
      `UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE 'delivered' END
        WHERE id = $1`,
      [rnd(size.orders)],
    ),
  (c, size) =>
    c.query('UPDATE order_items SET qty = qty + 1 WHERE order_id = $1 AND line = 1', [rnd(size.orders)]),
  // Cancel an order: its lines go with it (ON DELETE CASCADE).
  (c, size) => c.query('DELETE FROM orders WHERE id = $1', [rnd(size.orders)]),
  (c) =>
    c.query(
      `INSERT INTO customers (email, name) VALUES ('new-' || gen_random_uuid() || '@example.com', 'New')`,
    ),
  (c, size) =>
    c.query(`UPDATE customers SET email = 'changed-' || gen_random_uuid() || '@example.com' WHERE id = $1`, [
      rnd(size.customers),
    ]),
  // A primary-key change: the customer gets a new number, its orders follow (ON UPDATE CASCADE).
  (c, size) =>
    c.query(`UPDATE customers SET id = nextval('customers_id_seq') WHERE id = $1`, [rnd(size.customers)]),
  (c, size) =>
    c.query(
      `INSERT INTO events (at, kind, customer_id, payload) VALUES (now(), 'page_view', $1, '{"path": "/"}')`,
      [rnd(size.customers)],
    ),
  // A row moving to the next month's partition (its key changes too: `at` is part of it).
  (c, size) => c.query(`UPDATE events SET at = at + interval '1 month' WHERE id = $1`, [rnd(size.events)]),
  (c, size) => c.query('DELETE FROM events WHERE id = $1', [rnd(size.events)]),
];

/** Starts `writers` concurrent writers, each pausing `pauseMs` between transactions. */
export function startShopWorkload(
  url: string,
  size: ShopSize,
  opts: { writers?: number; pauseMs?: number } = {},
): ShopWorkload {
  const writers = opts.writers ?? 2;
  const pool = new pg.Pool({ connectionString: url, max: writers });
  pool.on('error', () => {});
  // The cutover ends the application's sessions: a client in use then errors, which is counted
  // as a failed transaction below, not an unhandled event.
  pool.on('connect', (client) => client.on('error', () => {}));
  let running = true;
  const stats: WorkloadStats = { transactions: 0, failed: 0 };

  const writer = async () => {
    let pause = opts.pauseMs ?? 0;
    while (running) {
      let client: pg.PoolClient | undefined;
      try {
        client = await pool.connect();
        await OPERATIONS[Math.floor(Math.random() * OPERATIONS.length)]!(client, size);
        stats.transactions++;
      } catch {
        stats.failed++;
        await client?.query('ROLLBACK').catch(() => {});
        pause = Math.max(pause, 20); // a server going away must not turn this into a busy loop
      } finally {
        client?.release();
      }
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      pause = opts.pauseMs ?? 0;
    }
  };
  const done = Promise.all(Array.from({ length: writers }, writer));

  let stopped: Promise<WorkloadStats> | undefined;
  return {
    stats: () => ({ ...stats }),
    stop() {
      stopped ??= (async () => {
        running = false;
        await done;
        await pool.end().catch(() => {});
        return { ...stats };
      })();
      return stopped;
    },
  };
}
