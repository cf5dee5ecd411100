// Pure parsers of the dump-restore and walg modes: pg_restore's table of contents and errors,
// and an environment file of WAL-G settings.
import { describe, expect, it } from 'vitest';
import { restoreErrors } from '../../engine/dump-restore/stream.js';
import { parseToc } from '../../engine/dump-restore/toc.js';
import { parseEnvFile } from '../../engine/walg/standby.js';

describe('parseToc', () => {
  it('reads multi-word types and names with spaces, keeping each line as it was', () => {
    const toc = parseToc(
      [
        ';',
        '; Archive created at 2026-11-29',
        '3; 3079 16385 EXTENSION - citext ',
        '4; 0 0 COMMENT - EXTENSION citext ',
        '216; 1259 16386 TABLE public items postgres',
        '3340; 2606 16400 CONSTRAINT public items items_pkey postgres',
        '3341; 2606 16401 FK CONSTRAINT public orders orders_customer_fkey postgres',
        '3342; 0 16402 MATERIALIZED VIEW DATA public spend postgres',
        '5; 2615 2200 SCHEMA - heroku_ext postgres',
      ].join('\n'),
    );
    expect(toc.map(({ type, schema, name }) => [type, schema, name])).toEqual([
      ['EXTENSION', '-', 'citext'],
      ['COMMENT', '-', 'EXTENSION citext'],
      ['TABLE', 'public', 'items'],
      ['CONSTRAINT', 'public', 'items items_pkey'],
      ['FK CONSTRAINT', 'public', 'orders orders_customer_fkey'],
      ['MATERIALIZED VIEW DATA', 'public', 'spend'],
      ['SCHEMA', '-', 'heroku_ext'],
    ]);
    expect(toc[2]!.line).toBe('216; 1259 16386 TABLE public items postgres');
  });
});

describe('restoreErrors', () => {
  it('pairs each error with the statement it ran, without the warning that follows', () => {
    const errors = restoreErrors(
      [
        'pg_restore: error: could not execute query: ERROR:  must be owner of extension plpgsql',
        "Command was: COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';",
        'pg_restore: error: could not execute query: ERROR:  schema "heroku_ext" already exists',
        'Command was: CREATE SCHEMA heroku_ext;',
        '',
        'pg_restore: warning: errors ignored on restore: 2',
      ].join('\n'),
    );
    expect(errors).toEqual([
      {
        error: 'could not execute query: ERROR:  must be owner of extension plpgsql',
        command: "COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';",
      },
      {
        error: 'could not execute query: ERROR:  schema "heroku_ext" already exists',
        command: 'CREATE SCHEMA heroku_ext;',
      },
    ]);
  });
});

describe('parseEnvFile', () => {
  it('takes KEY=VALUE lines, export and quotes, and leaves out comments and junk', () => {
    expect(
      parseEnvFile(
        '# WAL-G\nexport WALG_S3_PREFIX=\'s3://bucket/p\'\nAWS_REGION=eu-west-1\nAWS_SECRET_ACCESS_KEY="a b=c"\n\nnot a line\n',
      ),
    ).toEqual({ WALG_S3_PREFIX: 's3://bucket/p', AWS_REGION: 'eu-west-1', AWS_SECRET_ACCESS_KEY: 'a b=c' });
  });
});
