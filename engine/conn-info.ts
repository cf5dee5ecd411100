// A server to connect to, parsed once from its URL. The password is kept off enumerable
// properties so that logging, JSON or a status dump of this object can never show it.
import { parse } from 'pg-connection-string';
import { PgferryError } from './errors.js';

export type DbSide = 'source' | 'target';

export class ConnInfo {
  readonly side: DbSide;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  declare readonly url: string;

  constructor(side: DbSide, url: string) {
    let parsed: ReturnType<typeof parse>;
    try {
      if (!/^postgres(ql)?:\/\//i.test(url)) throw new Error('not a postgres:// URL');
      parsed = parse(url);
    } catch {
      throw new PgferryError(
        'PGFERRY_CONFIG_INVALID',
        `--${side} is not a PostgreSQL URL (expected postgresql://user:password@host:port/database)`,
        { side: 'config' },
      );
    }
    this.side = side;
    this.host = parsed.host ?? 'localhost';
    this.port = Number(parsed.port) || 5432;
    this.database = parsed.database ?? parsed.user ?? 'postgres';
    this.user = parsed.user ?? process.env.USER ?? 'postgres';
    Object.defineProperty(this, 'url', { value: url, enumerable: false });
  }

  /** `source app@db.example.com:5432/shop`: how errors and logs name a server. No password. */
  label(): string {
    return `${this.side} ${this.user}@${this.host}:${this.port}/${this.database}`;
  }

  /** What the checkpoint store records to recognise the same server on resume. */
  identity(): { host: string; port: number; database: string; user: string } {
    return { host: this.host, port: this.port, database: this.database, user: this.user };
  }

  /**
   * Arguments and environment for libpq programs (pg_dump, psql): the URL without its password on
   * the command line (visible in `ps`), the password in PGPASSWORD.
   */
  libpq(): { dbname: string; env: Record<string, string> } {
    const u = new URL(this.url);
    const password = decodeURIComponent(u.password);
    u.password = '';
    const env: Record<string, string> = {};
    if (password) env.PGPASSWORD = password;
    return { dbname: u.toString(), env };
  }

  toJSON(): Record<string, unknown> {
    return { side: this.side, ...this.identity() };
  }
}
