// A server to connect to, parsed once from its URL with libpq's meaning, for every client pgferry
// runs: node-postgres sessions and libpq's own programs (pg_dump, psql). The password is kept off
// enumerable properties so that logging, JSON or a status dump of this object can never show it.
//
// node-postgres reads sslmode its own way (`require` verifies the certificate, as libpq's
// `verify-full` does), so pgferry never hands it the URL: it builds node-postgres's settings from
// libpq's semantics (https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-SSLMODE-STATEMENTS):
//   disable      no TLS
//   allow        plain first, TLS if the server asks for it
//   prefer       TLS first (not verified), plain if the server has no TLS (libpq's default)
//   require      TLS, certificate not verified; verified against the CA when sslrootcert is given
//   verify-ca    TLS, certificate signed by the CA of sslrootcert
//   verify-full  verify-ca, and the host name must match the certificate
import fs from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { parse } from 'pg-connection-string';
import { PgferryError } from '../../lib/errors.js';

export type DbSide = 'source' | 'target';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** node-postgres's own spellings, accepted and rewritten for libpq's programs. */
const SSLMODE_ALIASES: Record<string, SslMode> = { 'no-verify': 'require' };

// The libpq parameters pgferry accepts in a URL. node-postgres honours the ssl*, password, user,
// dbname, host, port, options and connect_timeout ones; the rest reach pg_dump and psql only
// (pgferry sets keepalives and its own application_name on its sessions).
const KNOWN_PARAMS = new Set([
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslpassword',
  'sslcrl',
  'sslsni',
  'sslnegotiation',
  'sslcompression',
  'ssl',
  'password',
  'user',
  'dbname',
  'host',
  'port',
  'options',
  'connect_timeout',
  'application_name',
  'fallback_application_name',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'target_session_attrs',
  'channel_binding',
  'gssencmode',
]);

/** What node-postgres needs to open one session (no application_name or timeouts: db.ts adds those). */
export interface ClientSettings {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  options: string | undefined;
  connectionTimeoutMillis: number | undefined;
}

export class ConnInfo {
  readonly side: DbSide;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly sslmode: SslMode;
  declare readonly url: string;
  declare private readonly password: string | undefined;
  declare private readonly params: URLSearchParams;
  declare private readonly tls: ConnectionOptions;

  constructor(side: DbSide, url: string) {
    const invalid = (why: string) =>
      new PgferryError('PGFERRY_CONFIG_INVALID', `--${side} ${why}`, { side: 'config' });
    let parsed: ReturnType<typeof parse>;
    let u: URL;
    try {
      if (!/^postgres(ql)?:\/\//i.test(url)) throw new Error('not a postgres:// URL');
      // The query is read below with libpq's meaning: pg-connection-string would give sslmode its own.
      parsed = parse(url.split('?')[0]!);
      u = new URL(url);
    } catch {
      throw invalid('is not a PostgreSQL URL (expected postgresql://user:password@host:port/database)');
    }
    for (const key of u.searchParams.keys()) {
      if (!KNOWN_PARAMS.has(key)) {
        throw invalid(
          `has the parameter "${key}", which is not a libpq connection parameter pgferry knows (see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS)`,
        );
      }
    }
    const q = u.searchParams;
    this.side = side;
    this.host = q.get('host') || parsed.host || 'localhost';
    this.port = Number(q.get('port') || parsed.port) || 5432;
    this.database = q.get('dbname') || parsed.database || parsed.user || 'postgres';
    this.user = q.get('user') || parsed.user || process.env.USER || 'postgres';
    const rawMode = q.get('sslmode') ?? (['true', '1'].includes(q.get('ssl') ?? '') ? 'require' : 'prefer');
    const mode = SSLMODE_ALIASES[rawMode] ?? rawMode;
    if (!(SSL_MODES as readonly string[]).includes(mode)) {
      throw invalid(`has sslmode=${rawMode}; libpq knows ${SSL_MODES.join(', ')}`);
    }
    this.sslmode = mode as SslMode;
    const password = q.get('password') ?? (u.password ? decodeURIComponent(u.password) : undefined);
    Object.defineProperty(this, 'url', { value: url, enumerable: false });
    Object.defineProperty(this, 'password', { value: password, enumerable: false });
    Object.defineProperty(this, 'params', { value: q, enumerable: false });
    Object.defineProperty(this, 'tls', { value: this.readTls(invalid), enumerable: false });
  }

  /** Certificates and keys are read once, here, so a wrong path is a configuration error at start. */
  private readTls(invalid: (why: string) => PgferryError): ConnectionOptions {
    const q = this.params;
    const file = (param: string, value: string) => {
      try {
        return fs.readFileSync(value.replace(/^~(?=\/)/, os.homedir()));
      } catch (err) {
        throw invalid(`has ${param}=${value}, which cannot be read (${(err as Error).message})`);
      }
    };
    const opts: ConnectionOptions = {};
    const cert = q.get('sslcert');
    const key = q.get('sslkey');
    if (cert) opts.cert = file('sslcert', cert);
    if (key) opts.key = file('sslkey', key);
    if (q.get('sslpassword')) opts.passphrase = q.get('sslpassword') ?? undefined;
    let rootcert = q.get('sslrootcert');
    const verify = this.sslmode === 'verify-ca' || this.sslmode === 'verify-full';
    // libpq's default root certificate file, used when it exists.
    const defaultRoot = path.join(os.homedir(), '.postgresql', 'root.crt');
    if (!rootcert && verify) {
      if (!fs.existsSync(defaultRoot)) {
        throw invalid(
          `has sslmode=${this.sslmode} but no sslrootcert: add sslrootcert=/path/to/ca.pem (RDS: the global-bundle.pem from AWS) or sslrootcert=system for the system's CAs`,
        );
      }
      rootcert = defaultRoot;
    }
    if (rootcert && rootcert !== 'system') opts.ca = file('sslrootcert', rootcert);
    // require with a root certificate verifies the chain, as libpq does (verify-ca).
    opts.rejectUnauthorized = verify || (this.sslmode === 'require' && rootcert !== null);
    if (this.sslmode !== 'verify-full') opts.checkServerIdentity = () => undefined;
    // SNI takes host names only; an address is checked against the certificate's IP entries.
    else if (!isIP(this.host)) opts.servername = this.host;
    return opts;
  }

  /**
   * The TLS settings of each connection attempt, in libpq's order: prefer tries TLS and then
   * plain, allow the other way round; false is a plain connection.
   */
  sslAttempts(): (ConnectionOptions | false)[] {
    const tls = { ...this.tls };
    switch (this.sslmode) {
      case 'disable':
        return [false];
      case 'allow':
        return [false, tls];
      case 'prefer':
        return [tls, false];
      default:
        return [tls];
    }
  }

  clientSettings(): ClientSettings {
    const timeout = Number(this.params.get('connect_timeout'));
    return {
      host: this.host,
      port: this.port,
      user: this.user,
      password: this.password,
      database: this.database,
      options: this.params.get('options') ?? undefined,
      connectionTimeoutMillis: timeout > 0 ? Math.max(2, timeout) * 1000 : undefined,
    };
  }

  /** `source app@db.example.com:5432/shop`: how errors and logs name a server. No password. */
  label(): string {
    return `${this.side} ${this.user}@${this.host}:${this.port}/${this.database}`;
  }

  /** The URL's spelling of the server, without password (the run's setup adds what it is). */
  identity(): { host: string; port: number; database: string; user: string } {
    return { host: this.host, port: this.port, database: this.database, user: this.user };
  }

  /**
   * The connection of a libpq program (pg_dump, psql): the URL without its password (from the
   * userinfo or `?password=`), since `ps` shows a command line, with node-postgres's spellings of
   * sslmode rewritten as libpq's; the password apart, for a password file (pg-tools.ts).
   */
  libpq(): { dbname: string; password: string | undefined } {
    const u = new URL(this.url);
    u.password = '';
    u.searchParams.delete('password');
    u.searchParams.delete('ssl');
    if (u.searchParams.has('sslmode') || this.sslmode !== 'prefer')
      u.searchParams.set('sslmode', this.sslmode);
    return { dbname: u.toString(), password: this.password };
  }

  toJSON(): Record<string, unknown> {
    return { side: this.side, ...this.identity(), sslmode: this.sslmode };
  }
}
