// The demo's sample database: a small shop. Customers, orders (a foreign key to customers that
// follows a renumbered customer), order lines with a composite key, and an events table
// partitioned by month. Every id comes from a sequence. It is created by `shop_owner`, an ordinary
// role that owns its tables (what Heroku gives you), and written by `shop_app`, the application.
import pg from 'pg';

export const SHOP_DB = 'shop';
export const OWNER_ROLE = 'shop_owner';
export const APP_ROLE = 'shop_app';

const SCHEMA = `
CREATE TABLE customers (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  country text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id) ON UPDATE CASCADE,
  status text NOT NULL DEFAULT 'new',
  total numeric(12,2) NOT NULL DEFAULT 0,
  note text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE order_items (
  order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  line int NOT NULL,
  sku text NOT NULL,
  qty int NOT NULL,
  price numeric(10,2) NOT NULL,
  PRIMARY KEY (order_id, line)
);
CREATE TABLE events (
  id bigserial,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  customer_id bigint,
  payload jsonb,
  PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE TABLE events_later PARTITION OF events DEFAULT;
`;

/** How many rows of each table a sample of about `rows` rows holds. */
export interface ShopSize {
  customers: number;
  orders: number;
  /** Order lines: one to three per order, two on average. */
  orderItems: number;
  events: number;
}

export function shopSize(rows: number): ShopSize {
  const customers = Math.max(10, Math.round(rows * 0.1));
  const orders = Math.max(10, Math.round(rows * 0.2));
  const events = Math.max(10, rows - customers - 3 * orders);
  return { customers, orders, orderItems: 2 * orders, events };
}

const DATA: { table: string; sql: string; params: (s: ShopSize) => number[] }[] = [
  {
    table: 'customers',
    params: (s) => [s.customers],
    sql: `INSERT INTO customers (email, name, country, created_at)
            SELECT 'customer' || g || '@example.com', 'Customer ' || g,
                   (ARRAY['DE', 'FR', 'US', 'BR', 'JP', NULL])[g % 6 + 1],
                   timestamptz '2023-01-01' + g * interval '1 minute'
              FROM generate_series(1, $1::int) g`,
  },
  {
    table: 'orders',
    params: (s) => [s.orders, s.customers],
    sql: `INSERT INTO orders (customer_id, status, total, note, created_at)
            SELECT 1 + (g::bigint * 7919) % $2::int, (ARRAY['new', 'paid', 'shipped', 'delivered'])[g % 4 + 1],
                   (g % 20000) / 100.0 + 5, CASE WHEN g % 10 = 0 THEN 'gift wrap' END,
                   timestamptz '2024-01-01' + g * interval '37 seconds'
              FROM generate_series(1, $1::int) g`,
  },
  {
    table: 'order_items',
    params: (s) => [s.orders],
    sql: `INSERT INTO order_items (order_id, line, sku, qty, price)
            SELECT o, l, 'SKU-' || lpad(((o * 31 + l) % 5000)::text, 5, '0'), 1 + (o + l) % 3,
                   ((o * 13 + l * 7) % 10000) / 100.0 + 1
              FROM generate_series(1, $1::int) o, generate_series(1, 1 + o % 3) l`,
  },
  {
    table: 'events',
    params: (s) => [s.events, s.customers],
    sql: `INSERT INTO events (at, kind, customer_id, payload)
            SELECT timestamptz '2024-01-01 00:00:00+00' + (g % 90) * interval '1 day' + (g % 86400) * interval '1 second',
                   (ARRAY['page_view', 'add_to_cart', 'checkout'])[g % 3 + 1], 1 + g % $2::int,
                   jsonb_build_object('path', '/product/' || g % 500, 'ms', g % 900)
              FROM generate_series(1, $1::int) g`,
  },
];

/** Creates the two roles and the empty shop database (as the superuser). */
export async function createShopDatabase(
  superuserUrl: string,
  passwords: { owner: string; app: string },
): Promise<void> {
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  try {
    await client.query(
      `CREATE ROLE ${OWNER_ROLE} LOGIN NOSUPERUSER PASSWORD ${pg.escapeLiteral(passwords.owner)};
       CREATE ROLE ${APP_ROLE} LOGIN NOSUPERUSER PASSWORD ${pg.escapeLiteral(passwords.app)};
       -- At the cutover, the application's sessions still open after the freeze are ended, which
       -- takes pg_signal_backend for another role's sessions (no superuser).
       GRANT pg_signal_backend TO ${OWNER_ROLE};`,
    );
    // Not in the same query string: a multi-statement query is one transaction, CREATE DATABASE cannot be.
    await client.query(`CREATE DATABASE ${SHOP_DB} OWNER ${OWNER_ROLE}`);
  } finally {
    await client.end();
  }
}

/** Lets the owner create in `public` (owned by the superuser before PostgreSQL 15). */
export async function givePublicSchema(superuserShopUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: superuserShopUrl });
  await client.connect();
  try {
    await client.query(`ALTER SCHEMA public OWNER TO ${OWNER_ROLE}`);
  } finally {
    await client.end();
  }
}

/** Creates the tables and fills them, as the owner; grants the application what a web app has. */
export async function loadShop(ownerUrl: string, size: ShopSize): Promise<void> {
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    await client.query(SCHEMA);
    for (const d of DATA) await client.query(d.sql, d.params(size));
    await client.query(
      `GRANT USAGE ON SCHEMA public TO ${APP_ROLE};
       GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${APP_ROLE};
       GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${APP_ROLE};
       ANALYZE;`,
    );
  } finally {
    await client.end();
  }
}

/** The on-disk size of the shop's tables and indexes. */
export async function shopBytes(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS n
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'`,
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}
