// One COPY stream from the source into one COPY on the target, bytes passed through untouched.
// Transactions are the caller's: on failure the stream is aborted, which makes pg-copy-streams
// send CopyFail, so the target's COPY fails and its transaction can only roll back.
import { Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { CopyOut } from './copy-out.js';

export class CopyPipeError extends Error {
  constructor(
    readonly side: 'source' | 'target',
    override readonly cause: unknown,
  ) {
    super((cause as Error)?.message ?? String(cause));
  }
}

export interface CopyPipe {
  source: pg.Client;
  target: pg.Client;
  copyOut: string;
  copyIn: string;
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

export async function pipeCopy(p: CopyPipe): Promise<{ rows: number; bytes: number }> {
  // The source's rows come in pieces of MIN_PIECE or more (copy-out), each one CopyData message to the
  // target: over TLS, a message per row or per network read would be a record of its own.
  const out = p.source.query(new CopyOut(p.copyOut));
  const into = p.target.query(copyFrom(p.copyIn));
  let bytes = 0;
  // pg-copy-streams writes a piece's 5-byte CopyData header and the piece as two socket writes:
  // a write is a syscall and, over loopback, the receiving server's wakeup too. Corked until the
  // stream has passed the piece on, they go as one.
  const socket = (p.target as unknown as { connection: { stream: Writable } }).connection.stream;
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      p.onBytes?.(chunk.length);
      socket.cork();
      setImmediate(() => socket.uncork());
      cb(null, chunk);
    },
  });
  // The side whose stream failed first: once one fails, pipeline() destroys the other with the
  // same error, so "the source stream errored" alone does not say which server went away.
  let failedSide: 'source' | 'target' | undefined;
  out.once('error', () => {
    failedSide ??= 'source';
  });
  into.once('error', () => {
    failedSide ??= 'target';
  });
  try {
    await pipeline(out, count, into, p.signal ? { signal: p.signal } : {});
  } catch (err) {
    throw new CopyPipeError(failedSide ?? 'target', err);
  }
  return { rows: into.rowCount, bytes };
}
