// Writes one chunk into the target: the source's COPY TO STDOUT stream goes straight into COPY FROM
// STDIN, bytes passed through, rows never parsed. The chunk is one target transaction: on any
// failure the stream is aborted (pg-copy-streams sends CopyFail) and the transaction rolled back.
import type pg from 'pg';
import { rollbackQuietly } from '../lib/sql.js';
import { pipeCopy } from './copy-pipe.js';

export interface ChunkLoad {
  source: pg.Client;
  target: pg.Client;
  copyOut: string;
  copyIn: string;
  /** Run after the COPY in the same target transaction (the chunk's mark, see chunk-marks). */
  after?: (done: ChunkResult) => string;
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

export interface ChunkResult {
  rows: number;
  bytes: number;
}

/** Fails with the pipe's CopyPipeError (which side failed) or the target's own error. */
export async function loadChunk(load: ChunkLoad): Promise<ChunkResult> {
  const { target } = load;
  await target.query('BEGIN');
  try {
    const res = await pipeCopy(load);
    if (load.after) await target.query(load.after(res));
    await target.query('COMMIT');
    return res;
  } catch (err) {
    await rollbackQuietly(target);
    throw err;
  }
}
