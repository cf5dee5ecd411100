import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../lib/error-codes.js';
import { classify, PgferryError, redact } from '../../lib/errors.js';
import { errorsDoc } from '../../scripts/gen-errors-doc.js';

describe('error registry', () => {
  it('docs/errors.md is generated from the registry (npm run docs:errors)', () => {
    expect(fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')).toBe(errorsDoc());
  });

  it('codes follow PGFERRY_<AREA>_<PROBLEM>', () => {
    for (const code of Object.keys(ERRORS)) expect(code).toMatch(/^PGFERRY_[A-Z]+(_[A-Z]+)+$/);
  });

  it('classifies by SQLSTATE: connection and serialization retry, 42xxx pauses, the rest fails', () => {
    const pgErr = (code: string) => Object.assign(new Error('x'), { code });
    expect(classify(pgErr('08006'))).toBe('retry');
    expect(classify(pgErr('40001'))).toBe('retry');
    expect(classify(pgErr('40P01'))).toBe('retry');
    expect(classify(pgErr('55P03'))).toBe('retry');
    expect(classify(pgErr('42P01'))).toBe('pause');
    expect(classify(pgErr('23505'))).toBe('fail');
    expect(classify(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe('retry');
    // A socket error whose code has the shape of a SQLSTATE (found when a target session died mid-COPY).
    expect(
      classify(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' })),
    ).toBe('retry');
    expect(classify(new PgferryError('PGFERRY_CONFIG_INVALID', 'bad'))).toBe('fail');
  });

  it('never lets a password through', () => {
    expect(redact('connect postgresql://app:s3cret@db:5432/x failed')).toBe(
      'connect postgresql://app:***@db:5432/x failed',
    );
    expect(redact("host=db password='s3 cret' user=x")).toBe('host=db password=*** user=x');
    const e = new PgferryError('PGFERRY_SOURCE_CONNECT', 'cannot reach postgres://u:pw@h/db');
    expect(e.oneLine()).not.toContain('pw@');
  });
});
