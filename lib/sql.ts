// SQL names and literals quoted as PostgreSQL reads them, and the rollback every failure path
// uses: shared by the engine, the sinks and the checkpoint store.
import pg from 'pg';

export const quoteIdent = (name: string): string => pg.escapeIdentifier(name);
export const quoteLiteral = (value: string): string => pg.escapeLiteral(value);
export const qualified = (schema: string, name: string): string =>
  `${quoteIdent(schema)}.${quoteIdent(name)}`;

/**
 * Rolls back the session's transaction on the way out of a failure, without ever waiting long:
 * when the other end of a COPY pipe died, this session's COPY may never finish, and a ROLLBACK
 * queued behind it would wait forever. The caller then closes the session, which ends the
 * transaction on the server anyway.
 */
export async function rollbackQuietly(client: pg.Client, waitMs = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.query('ROLLBACK').catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    }),
  ]);
  clearTimeout(timer);
}
