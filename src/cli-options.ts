// The options several commands share, each with its help text and environment variable.
import { Option } from 'commander';
import { CAPTURE_KINDS } from './config.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

// No default: a URL is required. The environment variables keep passwords out of `ps`.
export const sourceOpt = () =>
  new Option(
    '--source <url>',
    'source database URL (or PGFERRY_SOURCE_URL, which `ps` does not show; required)',
  );
export const targetOpt = () =>
  new Option(
    '--target <url>',
    'target database URL (or PGFERRY_TARGET_URL, which `ps` does not show; required)',
  );
export const includeOpt = () =>
  new Option(
    '--include <pattern>',
    'only tables matching schema.table (* wildcard; repeatable; default: every table)',
  ).argParser(collect);
export const excludeOpt = () =>
  new Option(
    '--exclude <pattern>',
    'leave out tables matching schema.table (* wildcard; repeatable; default: none)',
  ).argParser(collect);
export const freezeOpt = () =>
  new Option(
    '--freeze <method>',
    'how writes stop on the source at cutover: readonly (default: database read-only, other sessions ended), revoke (write privileges revoked, their sessions ended) or external (you stopped the application; pgferry waits for quiet)',
  ).choices(['readonly', 'revoke', 'external']);
export const stateOpt = () =>
  new Option('--state <file>', 'checkpoint store (SQLite) of this run (or PGFERRY_STATE)').default(
    undefined,
    './pgferry-state.sqlite',
  );

export const captureOpt = (help: string) => new Option('--capture <kind>', help).choices(CAPTURE_KINDS);
