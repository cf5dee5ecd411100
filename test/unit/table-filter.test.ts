import { describe, expect, it } from 'vitest';
import { makeMatcher } from '../../engine/shared/table-filter.js';

describe('table filter', () => {
  it('selects everything without patterns', () => {
    expect(makeMatcher({ include: [], exclude: [] })('public', 'a')).toBe(true);
  });
  it('matches schema.table with wildcards', () => {
    const m = makeMatcher({ include: ['public.acc*'], exclude: [] });
    expect(m('public', 'accounts')).toBe(true);
    expect(m('other', 'accounts')).toBe(false);
    expect(m('public', 'orders')).toBe(false);
  });
  it('matches a bare table name in any schema', () => {
    const m = makeMatcher({ include: [], exclude: ['logs'] });
    expect(m('public', 'logs')).toBe(false);
    expect(m('audit', 'logs')).toBe(false);
    expect(m('audit', 'logs2')).toBe(true);
  });
  it('matches quoted identifiers unquoted, dots and spaces literal', () => {
    const m = makeMatcher({ include: ['Mixed Case.Tab "q"'], exclude: [] });
    expect(m('Mixed Case', 'Tab "q"')).toBe(true);
    expect(m('MixedXCase', 'Tab "q"')).toBe(false);
  });
  it('exclude wins over include', () => {
    const m = makeMatcher({ include: ['public.*'], exclude: ['public.secret'] });
    expect(m('public', 'secret')).toBe(false);
    expect(m('public', 'open')).toBe(true);
  });
});
