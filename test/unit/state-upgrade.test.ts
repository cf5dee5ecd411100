// A state file written by the previous pgferry (schema version 4) is upgraded in place when a
// writer opens it: a days-long migration may see pgferry upgraded under it, and must go on.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function v4File(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-state-v4-'));
  dirs.push(dir);
  const file = path.join(dir, 'state.sqlite');
  const db = new Database(file);
  db.exec(fs.readFileSync(new URL('../fixtures/state-v4.sql', import.meta.url), 'utf8'));
  db.prepare("INSERT INTO meta VALUES ('schema_version', '4'), ('phase', 'replicating')").run();
  db.prepare("INSERT INTO tables VALUES (1, 'public', 'items', 10, 100, '[]', '[\"id\"]', 'binary')").run();
  db.prepare(
    "INSERT INTO chunks (table_id, seq, status, rows) VALUES (1, 0, 'done', 5), (1, 1, 'done', 5)",
  ).run();
  db.close();
  return file;
}

describe('state file upgrade', () => {
  it('brings a version 4 file to version 5, keeping its plan, and never reuses a chunk id', () => {
    const file = v4File();
    expect(() => CheckpointStore.open(file, { create: false, readonly: true })).toThrow(
      /schema version 5 \(found 4\)/,
    );
    const store = CheckpointStore.open(file, { create: false });
    try {
      expect(store.getMeta('schema_version')).toBe('5');
      expect(store.phase()).toBe('replicating');
      expect(store.chunks().map((c) => [c.id, c.rows])).toEqual([
        [1, 5],
        [2, 5],
      ]);
      expect(store.addTableRequest('add', 'public.orders')).toMatchObject({ id: 1, state: 'pending' });
      store.removeTablePlan('public', 'items');
      store.savePlan([
        {
          schema: 'public',
          name: 'orders',
          rowsEstimate: 1,
          bytesEstimate: 1,
          keyColumns: '[]',
          columns: '["id"]',
          copyFormat: 'binary',
          chunks: [{ lo: null, hi: null }],
        },
      ]);
      // Chunk ids name marks on the target: the removed table's ids stay used.
      expect(store.chunks().map((c) => c.id)).toEqual([3]);
    } finally {
      store.close();
    }
    const again = CheckpointStore.open(file, { create: false, readonly: true });
    expect(again.tableRequests().map((r) => r.pattern)).toEqual(['public.orders']);
    again.close();
  });
});
