// The pure parts of two-way sync: which key sequences can never meet, and the WHEN condition that
// keeps a user trigger from firing for pgferry's own replay.
import { describe, expect, it } from 'vitest';
import { disjoint } from '../../engine/two-way/sequences.js';
import { withOriginCondition } from '../../engine/two-way/triggers.js';

const seq = (increment: bigint, last: bigint, min = 1n, max = 9_223_372_036_854_775_807n) => ({
  increment,
  last,
  min,
  max,
});

describe('key sequences in two-way sync', () => {
  it('odd and even (or one of n) steps never meet; one step, or the same residue, does', () => {
    expect(disjoint(seq(2n, 101n), seq(2n, 2000n))).toBe(true);
    expect(disjoint(seq(3n, 10n), seq(3n, 11n))).toBe(true);
    expect(disjoint(seq(2n, 101n), seq(2n, 2001n))).toBe(false);
    expect(disjoint(seq(1n, 101n), seq(1n, 2000n))).toBe(false);
    // Different steps are not judged (refused, with the fix), even where they would never meet.
    expect(disjoint(seq(2n, 1n), seq(4n, 2n))).toBe(false);
  });

  it('disjoint ranges never meet, whatever the steps', () => {
    expect(disjoint(seq(1n, 5n, 1n, 1_000_000n), seq(1n, 1_000_001n, 1_000_001n, 2_000_000n))).toBe(true);
    expect(disjoint(seq(1n, 5n, 1n, 1_000_000n), seq(1n, 900_000n, 900_000n, 2_000_000n))).toBe(false);
  });
});

describe('user triggers in two-way sync', () => {
  it('gain a WHEN condition on the origin, joined to their own', () => {
    expect(
      withOriginCondition(
        'CREATE TRIGGER t AFTER INSERT ON public.x FOR EACH ROW EXECUTE FUNCTION f()',
        'ab12',
      ),
    ).toBe(
      "CREATE TRIGGER t AFTER INSERT ON public.x FOR EACH ROW WHEN (current_setting('pgferry.origin', true) IS DISTINCT FROM 'ab12') EXECUTE FUNCTION f()",
    );
    expect(
      withOriginCondition(
        'CREATE TRIGGER t BEFORE UPDATE ON public.x FOR EACH ROW WHEN ((old.* IS DISTINCT FROM new.*)) EXECUTE FUNCTION public.f()',
        'ab12',
      ),
    ).toBe(
      "CREATE TRIGGER t BEFORE UPDATE ON public.x FOR EACH ROW WHEN (current_setting('pgferry.origin', true) IS DISTINCT FROM 'ab12' AND ((old.* IS DISTINCT FROM new.*))) EXECUTE FUNCTION public.f()",
    );
  });
});
