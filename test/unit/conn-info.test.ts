// A connection URL means what libpq says it means, for node-postgres and libpq's programs alike.
import { describe, expect, it } from 'vitest';
import { ConnInfo } from '../../engine/shared/conn-info.js';

describe('ConnInfo: libpq semantics of a URL', () => {
  it('keeps a password given as ?password= off the command line of libpq programs', () => {
    const c = new ConnInfo('source', 'postgresql://u@h:5433/db?password=pw-in-query&sslmode=require');
    const { dbname, password } = c.libpq();
    expect(dbname).not.toContain('pw-in-query');
    expect(dbname).toContain('sslmode=require');
    expect(password).toBe('pw-in-query');
    expect(JSON.stringify(c)).not.toContain('pw-in-query');
    expect(c.clientSettings().password).toBe('pw-in-query');
  });

  it('gives each sslmode its libpq order of attempts', () => {
    const attempts = (mode: string) =>
      new ConnInfo('target', `postgresql://u:p@h/db?sslmode=${mode}`).sslAttempts().map((a) => a !== false);
    expect(attempts('disable')).toEqual([false]);
    expect(attempts('allow')).toEqual([false, true]);
    expect(attempts('prefer')).toEqual([true, false]);
    expect(attempts('require')).toEqual([true]);
    expect(new ConnInfo('target', 'postgresql://u:p@h/db').sslmode).toBe('prefer');
  });

  it('encrypts without verifying for require, and verifies for verify-full', () => {
    const [req] = new ConnInfo('source', 'postgresql://u:p@h/db?sslmode=require').sslAttempts();
    expect(req ? req.rejectUnauthorized : null).toBe(false);
    const [full] = new ConnInfo(
      'source',
      'postgresql://u:p@db.example.com/db?sslmode=verify-full&sslrootcert=system',
    ).sslAttempts();
    expect(full ? full.rejectUnauthorized : null).toBe(true);
    expect(full ? full.servername : null).toBe('db.example.com');
  });

  it("rewrites node-postgres's no-verify as libpq's require", () => {
    const c = new ConnInfo('source', 'postgresql://u:p@h/db?sslmode=no-verify');
    expect(c.sslmode).toBe('require');
    expect(c.libpq().dbname).toContain('sslmode=require');
  });

  it('refuses what libpq would refuse, naming the parameter', () => {
    expect(() => new ConnInfo('source', 'postgresql://u:p@h/db?sslmode=sometimes')).toThrow(
      /sslmode=sometimes/,
    );
    expect(() => new ConnInfo('source', 'postgresql://u:p@h/db?sslmod=require')).toThrow(/"sslmod"/);
    expect(() => new ConnInfo('target', 'postgresql://u:p@h/db?sslmode=verify-full')).toThrow(/sslrootcert/);
    expect(
      () => new ConnInfo('target', 'postgresql://u:p@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem'),
    ).toThrow(/cannot be read/);
  });
});
