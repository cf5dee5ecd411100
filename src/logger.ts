// pino: JSON lines on stderr by default (for log shippers), human-readable on a terminal.
// stdout stays free for command output (tables, --json). A JSON line carries its level by name
// ("level":"info") and its time in ISO 8601 UTC ("time":"2026-01-02T03:04:05.678Z"), as Loki,
// CloudWatch and Datadog read them without a parsing rule.

import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

const lineSink = (write: (line: string) => void) =>
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      write(chunk.toString());
      cb();
    },
  });

export type { Logger };

/**
 * `write` takes the lines instead of stderr: on a terminal, the progress bars print them above
 * themselves.
 */
export function createLogger(
  opts: { level?: string; pretty?: boolean; write?: (line: string) => void } = {},
): Logger {
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
        destination: opts.write ? lineSink(opts.write) : 2,
        sync: true,
        colorize: true,
        ignore: 'pid,hostname,app',
        singleLine: true,
        translateTime: 'HH:MM:ss',
      }),
    );
  }
  return pino(
    {
      ...base,
      formatters: { level: (label: string) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.write ? lineSink(opts.write) : pino.destination({ dest: 2, sync: true }),
  );
}

/** A logger that prints nothing (tests, library use). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
