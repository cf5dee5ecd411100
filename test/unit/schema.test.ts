import { describe, expect, it } from 'vitest';
import { classifyPostData, parseDump, preparePreData } from '../../engine/schema/schema.js';

const entry = (name: string, type: string, schema: string, sql: string) =>
  `--\n-- Name: ${name}; Type: ${type}; Schema: ${schema}; Owner: -\n--\n\n${sql}\n\n\n`;

const PREAMBLE = `--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\n`;

describe('pg_dump output', () => {
  it('is split into entries, without psql meta-commands', () => {
    const text = `${PREAMBLE}${entry('t', 'TABLE', 'public', 'CREATE TABLE public.t (id int);')}--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict AbC123\n`;
    const { preamble, entries } = parseDump(text);
    expect(preamble).toContain('SET client_encoding');
    expect(entries).toEqual([
      { name: 't', type: 'TABLE', schema: 'public', sql: 'CREATE TABLE public.t (id int);' },
    ]);
  });

  it('pre-data: schemas tolerate existing ones, COMMENT ON EXTENSION is left out, heroku_ext is created', () => {
    const text =
      PREAMBLE +
      entry('app', 'SCHEMA', '-', 'CREATE SCHEMA app;') +
      entry('hstore', 'EXTENSION', '-', 'CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA heroku_ext;') +
      entry('EXTENSION hstore', 'COMMENT', '-', "COMMENT ON EXTENSION hstore IS 'x';");
    const { script, skipped } = preparePreData(text);
    expect(script).toContain('CREATE SCHEMA IF NOT EXISTS app;');
    expect(script).toContain('CREATE SCHEMA IF NOT EXISTS heroku_ext;');
    expect(script.indexOf('heroku_ext;')).toBeLessThan(script.indexOf('CREATE EXTENSION'));
    expect(script).not.toContain('COMMENT ON EXTENSION');
    expect(script).not.toMatch(/\\restrict|transaction_timeout|statement_timeout/);
    expect(script).toContain("SET client_encoding = 'UTF8';");
    expect(skipped.map((s) => s.name)).toEqual(['EXTENSION hstore']);
  });

  it('post-data: keys and indexes after the copy, FKs and triggers at cutover, event triggers left out', () => {
    const text =
      entry(
        't t_pkey',
        'CONSTRAINT',
        'public',
        'ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);',
      ) +
      entry('t_a_idx', 'INDEX', 'public', 'CREATE INDEX t_a_idx ON public.t USING btree (a);') +
      entry(
        't t_b_key',
        'CONSTRAINT',
        'public',
        'ALTER TABLE ONLY public.t ADD CONSTRAINT t_b_key UNIQUE (b);',
      ) +
      entry('t_c_idx', 'INDEX', 'public', 'CREATE UNIQUE INDEX t_c_idx ON public.t USING btree (c);') +
      entry(
        'p_pkey_1',
        'INDEX ATTACH',
        'public',
        'ALTER INDEX public.p_pkey ATTACH PARTITION public.p1_pkey;',
      ) +
      entry(
        'u t_fk',
        'FK CONSTRAINT',
        'public',
        'ALTER TABLE ONLY public.u ADD CONSTRAINT t_fk FOREIGN KEY (t) REFERENCES public.t(id);',
      ) +
      entry(
        't audit',
        'TRIGGER',
        'public',
        'CREATE TRIGGER audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();',
      ) +
      entry(
        'ddl_log',
        'EVENT TRIGGER',
        '-',
        'CREATE EVENT TRIGGER ddl_log ON ddl_command_end EXECUTE FUNCTION public.g();',
      );
    const { objects, skipped } = classifyPostData(parseDump(text).entries);
    expect(objects.map((o) => [o.stage, o.kind])).toEqual([
      ['indexes', 'CONSTRAINT'],
      ['indexes', 'INDEX'],
      ['unique', 'CONSTRAINT'],
      ['unique', 'INDEX'],
      ['post-indexes', 'INDEX ATTACH'],
      ['cutover', 'FK CONSTRAINT'],
      ['cutover', 'TRIGGER'],
    ]);
    expect(skipped.map((s) => s.type)).toEqual(['EVENT TRIGGER']);
  });
});

describe("pgferry's own capture triggers", () => {
  it('never reach the target: any run, old unsuffixed names, quoted schema; user triggers stay', () => {
    const text =
      entry(
        'items pgferry_capture_0a1b2c3d4e',
        'TRIGGER',
        'public',
        'CREATE TRIGGER pgferry_capture_0a1b2c3d4e AFTER INSERT OR DELETE OR UPDATE ON public.items FOR EACH ROW EXECUTE FUNCTION pgferry.capture_row_0a1b2c3d4e_16384();',
      ) +
      entry(
        'items pgferry_capture_truncate_ffffffffff',
        'TRIGGER',
        'public',
        'CREATE TRIGGER pgferry_capture_truncate_ffffffffff AFTER TRUNCATE ON public.items FOR EACH STATEMENT EXECUTE FUNCTION pgferry.capture_truncate_ffffffffff_16384();',
      ) +
      entry(
        'items pgferry_capture',
        'TRIGGER',
        'public',
        'CREATE TRIGGER pgferry_capture AFTER INSERT OR DELETE OR UPDATE ON public.items FOR EACH ROW EXECUTE PROCEDURE "pgferry".capture_row_16384();',
      ) +
      entry(
        'items audit',
        'TRIGGER',
        'public',
        'CREATE TRIGGER audit AFTER INSERT ON public.items FOR EACH ROW EXECUTE FUNCTION pgferry_app.audit();',
      );
    const { objects, skipped } = classifyPostData(parseDump(text).entries);
    expect(objects.map((o) => o.name)).toEqual(['public.items audit']);
    expect(skipped).toEqual([]);
  });
});

describe('objectTable', () => {
  it('names the table of a constraint or an index, quoted names unquoted', async () => {
    const { objectTable } = await import('../../engine/schema/schema.js');
    expect(objectTable('ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);')).toEqual({
      schema: 'public',
      name: 't',
    });
    expect(
      objectTable(
        'ALTER TABLE ONLY "Mixed Case"."Tab ""q"""\n    ADD CONSTRAINT "Tab ""q""_pkey" PRIMARY KEY (k);',
      ),
    ).toEqual({ schema: 'Mixed Case', name: 'Tab "q"' });
    expect(objectTable('CREATE UNIQUE INDEX "my idx" ON ONLY app.events USING btree (id);')).toEqual({
      schema: 'app',
      name: 'events',
    });
    expect(objectTable('ALTER INDEX public.p_pkey ATTACH PARTITION public.p1_pkey;')).toBeNull();
  });
});
