// pino: JSON lines on stderr by default (for log shippers), human-readable on a terminal.
// stdout stays free for command output (tables, --json).
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export function createLogger(opts: { level?: string; pretty?: boolean } = {}): Logger {
  const level = opts.level ?? process.env.PGFERRY_LOG_LEVEL ?? 'info';
  const usePretty = opts.pretty ?? process.stderr.isTTY === true;
  const base = {
    level,
    base: { app: 'pgferry' },
    // Belt and braces: no field of these names ever reaches a log line.
    redact: { paths: ['password', '*.password', 'url', '*.url', 'connectionString'], censor: '***' },
  };
  if (usePretty) {
    return pino(
      base,
      pretty({
        destination: 2,
        sync: true,
        colorize: true,
        ignore: 'pid,hostname,app',
        translateTime: 'HH:MM:ss',
      }),
    );
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that prints nothing (tests, library use). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
