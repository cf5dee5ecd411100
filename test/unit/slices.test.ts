// How a replay round splits its workers over the tables with a backlog (engine/replay/slices.ts).
import { describe, expect, it } from 'vitest';
import { planSlices } from '../../engine/replay/slices.js';

const t = (changes: number, sliceable = true) => ({ changes, sliceable });

describe('planSlices', () => {
  it('gives idle workers to the biggest backlog, if each slice keeps enough changes', () => {
    expect(planSlices([t(100_000)], 4, 10_000)).toEqual([4]);
    expect(planSlices([t(25_000)], 4, 10_000)).toEqual([2]);
    expect(planSlices([t(90_000), t(30_000)], 3, 10_000)).toEqual([2, 1]);
    expect(planSlices([t(90_000, false), t(30_000)], 3, 10_000)).toEqual([1, 2]);
  });

  it('cuts a backlog of jobs full batches in jobs slices even when every worker has a unit', () => {
    // pgbench's backlog: accounts, tellers, branches; 2 jobs, 50,000 changes a batch.
    expect(planSlices([t(690_000), t(157_000), t(152_000)], 2, 10_000, 50_000)).toEqual([2, 2, 2]);
    expect(planSlices([t(690_000), t(60_000), t(5_000)], 2, 10_000, 50_000)).toEqual([2, 1, 1]);
    // A steady load's small batches, or a table that must not be sliced, stay whole.
    expect(planSlices([t(3_000), t(2_000), t(900)], 2, 10_000, 50_000)).toEqual([1, 1, 1]);
    expect(planSlices([t(690_000, false), t(157_000)], 2, 10_000, 50_000)).toEqual([1, 2]);
    // Two-way sync never slices (minSlice infinite).
    expect(planSlices([t(690_000), t(157_000)], 2, Number.POSITIVE_INFINITY, 50_000)).toEqual([1, 1]);
  });
});
