// Writes one chunk into the target: the source's COPY TO STDOUT stream goes straight into COPY FROM
// STDIN, bytes passed through, rows never parsed. The chunk is one target transaction: on any
// failure the stream is aborted (pg-copy-streams sends CopyFail) and the transaction rolled back.
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

export interface ChunkLoad {
  source: pg.Client;
  target: pg.Client;
  copyOut: string;
  copyIn: string;
  /** Run first in the same target transaction (the cleanup of an earlier, unfinished attempt). */
  before?: string;
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

export interface ChunkResult {
  rows: number;
  bytes: number;
}

export class ChunkStreamError extends Error {
  constructor(
    readonly side: 'source' | 'target',
    override readonly cause: unknown,
  ) {
    super((cause as Error)?.message ?? String(cause));
  }
}

export async function loadChunk(load: ChunkLoad): Promise<ChunkResult> {
  const { source, target } = load;
  await target.query('BEGIN');
  try {
    if (load.before) await target.query(load.before);
    const out = source.query(copyTo(load.copyOut));
    const into = target.query(copyFrom(load.copyIn));
    let bytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        load.onBytes?.(chunk.length);
        cb(null, chunk);
      },
    });
    let failedSide: 'source' | 'target' = 'target';
    out.once('error', () => {
      failedSide = 'source';
    });
    try {
      await pipeline(out, count, into, load.signal ? { signal: load.signal } : {});
    } catch (err) {
      throw new ChunkStreamError(failedSide, err);
    }
    await target.query('COMMIT');
    return { rows: into.rowCount, bytes };
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
