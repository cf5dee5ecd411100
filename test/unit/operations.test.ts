// The API's long calls as operations: started at once, one at a time, a refusal at the start
// leaves no trace, progress shown while running, the outcome (result or coded error) after, and
// only the ten most recent finished ones kept.
import { describe, expect, it } from 'vitest';
import { PgferryError } from '../../lib/errors.js';
import { Operations } from '../../src/http/operations.js';

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('Operations', () => {
  it('runs one at a time and records the outcome', async () => {
    const failures: string[] = [];
    const ops = new Operations((e) => failures.push(e.code));
    let finish!: (r: { equal: boolean; checksums: boolean; tables: [] }) => void;
    const op = ops.start('verify', (progress) => {
      progress('counting rows: 1 of 2');
      return new Promise((resolve) => {
        finish = resolve;
      });
    });
    expect(op).toMatchObject({
      kind: 'verify',
      state: 'running',
      progress: 'counting rows: 1 of 2',
      finishedAt: null,
    });
    expect(() => ops.start('cutover', () => Promise.resolve(null))).toThrow(/a verify is already running/);
    finish({ equal: true, checksums: false, tables: [] });
    await settle();
    expect(ops.get(op.id)).toMatchObject({ state: 'succeeded', progress: null, result: { equal: true } });
    expect(typeof ops.get(op.id)?.finishedAt).toBe('string');

    const failed = ops.start('cutover', () =>
      Promise.reject(new PgferryError('PGFERRY_CUTOVER_REFUSED', 'lag too high', { side: 'source' })),
    );
    await settle();
    expect(ops.get(failed.id)).toMatchObject({
      state: 'failed',
      result: null,
      error: { code: 'PGFERRY_CUTOVER_REFUSED', message: 'lag too high', side: 'source' },
    });
    expect(failures).toEqual(['PGFERRY_CUTOVER_REFUSED']);
    expect(ops.list().map((o) => o.id)).toEqual([failed.id, op.id]);
  });

  it('leaves no operation behind for a call refused at its start', () => {
    const ops = new Operations();
    expect(() =>
      ops.start('cutover', () => {
        throw new PgferryError('PGFERRY_CUTOVER_REFUSED', 'replay is paused');
      }),
    ).toThrow('replay is paused');
    expect(ops.list()).toEqual([]);
  });

  it('keeps the ten most recent finished operations', async () => {
    const ops = new Operations();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      ids.push(ops.start('verify', () => Promise.resolve({ equal: true, checksums: false, tables: [] })).id);
      await settle();
    }
    expect(ops.list().map((o) => o.id)).toEqual(ids.slice(2).reverse());
    expect(ops.get(ids[0]!)).toBeNull();
  });
});
