import { describe, expect, it } from 'vitest';
import { isLoopback, loadMigrateConfig, parseDuration, parseSize } from '../../src/config.js';
import { bearerMatches } from '../../src/http/access.js';

describe('configuration', () => {
  it('parses durations and sizes', () => {
    expect(parseDuration('10m', 'x')).toBe(600_000);
    expect(parseDuration('1h30m', 'x')).toBe(5_400_000);
    expect(parseDuration('500ms', 'x')).toBe(500);
    expect(() => parseDuration('10 minutes', '--max-snapshot-age')).toThrow(/--max-snapshot-age/);
    expect(parseSize('128MB', 'x')).toBe(128 * 1024 * 1024);
    expect(parseSize('1.5gb', 'x')).toBe(1.5 * 1024 ** 3);
    expect(() => parseSize('0', '--chunk-size')).toThrow(/--chunk-size/);
  });

  it('flags win over the environment, the environment over defaults', () => {
    const env = {
      PGFERRY_SOURCE_URL: 'postgresql://env:pw@envhost/db',
      PGFERRY_TARGET_URL: 'postgresql://env:pw@envtarget/db',
      PGFERRY_JOBS: '3',
    };
    const fromEnv = loadMigrateConfig({ copyOnly: true }, env);
    expect(fromEnv.source.host).toBe('envhost');
    expect(fromEnv.jobs).toBe(3);
    expect(fromEnv.maxSnapshotAgeMs).toBe(600_000);
    const fromFlags = loadMigrateConfig(
      { copyOnly: true, source: 'postgresql://f@flaghost/db', jobs: '7' },
      env,
    );
    expect(fromFlags.source.host).toBe('flaghost');
    expect(fromFlags.jobs).toBe(7);
    expect(Object.isFrozen(fromFlags)).toBe(true);
  });

  it('keeps the password off everything that can be printed', () => {
    const c = loadMigrateConfig(
      { copyOnly: true, source: 'postgresql://u:top-secret@h/db', target: 'postgresql://u:top-secret@t/db' },
      {},
    );
    expect(JSON.stringify(c)).not.toContain('top-secret');
    expect(c.source.label()).toBe('source u@h:5432/db');
    expect(Object.keys(c.source)).not.toContain('url');
    expect(c.source.libpq()).toEqual({ dbname: 'postgresql://u@h/db', password: 'top-secret' });
  });

  it('refuses modes that exclude each other', () => {
    const env = { PGFERRY_SOURCE_URL: 'postgresql://a@b/c', PGFERRY_TARGET_URL: 'postgresql://a@b/c' };
    expect(() => loadMigrateConfig({ copyOnly: true, exitWhenSynced: true }, env)).toThrow(
      /exclude each other/,
    );
  });

  it('--http binds loopback by default and beyond it only with an API token', () => {
    const env = { PGFERRY_SOURCE_URL: 'postgresql://a@b/c', PGFERRY_TARGET_URL: 'postgresql://a@b/c' };
    expect(loadMigrateConfig({ http: '8080' }, env).http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(loadMigrateConfig({ http: '[::1]:8080' }, env).http).toEqual({ host: '::1', port: 8080 });
    for (const http of ['0.0.0.0:8080', '[::]:8080', 'pgferry.internal:8080', '10.0.0.5:8080']) {
      expect(() => loadMigrateConfig({ http }, env), http).toThrow(/PGFERRY_API_TOKEN/);
      // A short token guards nothing beyond this machine.
      expect(() => loadMigrateConfig({ http }, { ...env, PGFERRY_API_TOKEN: 's3cret' }), http).toThrow(
        /at least 16/,
      );
      expect(
        loadMigrateConfig({ http }, { ...env, PGFERRY_API_TOKEN: 's3cret-s3cret-s3cret' }).http?.port,
      ).toBe(8080);
    }
    expect(
      JSON.stringify(loadMigrateConfig({ http: '8080' }, { ...env, PGFERRY_API_TOKEN: 's3cret' })),
    ).not.toContain('s3cret');
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopback)).toBe(true);
  });

  it('compares the bearer token exactly', () => {
    expect(bearerMatches('Bearer tok-123', 'tok-123')).toBe(true);
    expect(bearerMatches('bearer tok-123', 'tok-123')).toBe(true);
    for (const header of [
      undefined,
      '',
      'Bearer',
      'Bearer tok-12',
      'Bearer tok-1234',
      'Basic tok-123',
      'tok-123',
    ]) {
      expect(bearerMatches(header, 'tok-123'), String(header)).toBe(false);
    }
  });
});
