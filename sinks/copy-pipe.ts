// One COPY stream from the source into one COPY on the target, bytes passed through untouched.
// Transactions are the caller's: on failure the stream is aborted, which makes pg-copy-streams
// send CopyFail, so the target's COPY fails and its transaction can only roll back.
import { Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

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

/**
 * Chunks are passed on in runs of at least this many bytes. The source's stream comes in pieces of
 * one network read (over TLS: one record, 8–16 kB), and pg-copy-streams writes each piece to the
 * target as two socket writes (the CopyData header, then the bytes): over TLS each write is a
 * record of its own, encrypted and sent on its own. Joining pieces first makes those per-write
 * costs rare (measured: bench:tls, copy over TLS).
 */
export const COALESCE_BYTES = 256 * 1024;

export async function pipeCopy(p: CopyPipe): Promise<{ rows: number; bytes: number }> {
  const out = p.source.query(copyTo(p.copyOut));
  const into = p.target.query(copyFrom(p.copyIn));
  let bytes = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  // pg-copy-streams writes a piece's 5-byte CopyData header, the piece, and at the end CopyDone,
  // each as a socket write of its own: a write is a syscall and, over loopback, the receiving
  // server's wakeup too. Corked until the stream has passed the piece on, they go as one.
  const socket = (p.target as unknown as { connection: { stream: Writable } }).connection.stream;
  const release = (t: Transform) => {
    if (heldBytes === 0) return;
    socket.cork();
    setImmediate(() => socket.uncork());
    t.push(held.length === 1 ? held[0] : Buffer.concat(held, heldBytes));
    held = [];
    heldBytes = 0;
  };
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      p.onBytes?.(chunk.length);
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes >= COALESCE_BYTES) release(this);
      cb();
    },
    flush(cb) {
      release(this);
      cb();
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
