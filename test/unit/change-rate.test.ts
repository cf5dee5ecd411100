// The replay's rate of applied changes: the last ten seconds of batches, kept with a running sum.
import { describe, expect, it } from 'vitest';
import { ChangeRate } from '../../engine/replay/backlog.js';

describe('ChangeRate', () => {
  it('is 0 with no batch, and the changes over the span since the oldest batch of the last 10 s', () => {
    const rate = new ChangeRate();
    expect(rate.perSecond(1_000)).toBe(0);
    rate.add(100, 0);
    rate.add(300, 2_000);
    expect(rate.perSecond(4_000)).toBe(100); // 400 changes over 4 s
    expect(rate.perSecond(11_000)).toBe(Math.round(300 / 9)); // the first batch left the window
    expect(rate.perSecond(13_000)).toBe(0);
  });

  it('agrees with a plain sum over the window through a long steady run', () => {
    const rate = new ChangeRate();
    const all: { at: number; n: number }[] = [];
    for (let i = 0; i < 20_000; i++) {
      const at = i * 7;
      const n = (i * 37) % 101;
      rate.add(n, at);
      all.push({ at, n });
      if (i % 500 === 0) {
        const window = all.filter((b) => at - b.at <= 10_000);
        const span = Math.max(1, (at - window[0]!.at) / 1000);
        expect(rate.perSecond(at)).toBe(Math.round(window.reduce((a, b) => a + b.n, 0) / span));
      }
    }
  });
});
