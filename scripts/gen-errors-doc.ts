// Prints docs/errors.md from the error registry: `npm run docs:errors`. A test keeps them equal.
import { ERRORS } from '../lib/error-codes.js';

export function errorsDoc(): string {
  const lines = [
    '# pgferry errors',
    '',
    'Generated from `lib/error-codes.ts` by `npm run docs:errors`; a test fails when the two differ.',
    '',
    'Every error pgferry reports carries one of these codes, the side it concerns (`source`, `target`,',
    '`state`, `config`, `tool`), the object (a table, a chunk, an index) where there is one, and the',
    "server's SQLSTATE when PostgreSQL raised it. On the command line it is one line:",
    '`pgferry: CODE: side object: message — hint`, and the exit status below.',
    '',
    '| code | exit | HTTP | retry helps | meaning | what to do |',
    '|---|---|---|---|---|---|',
  ];
  for (const [code, spec] of Object.entries(ERRORS)) {
    lines.push(
      `| \`${code}\` | ${spec.exit} | ${spec.http} | ${spec.retryable ? 'yes' : 'no'} | ${spec.summary} | ${spec.hint.replace(/\|/g, '\\|')} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
