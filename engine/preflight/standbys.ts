// A server in recovery (a hot standby: a Heroku follower, an RDS read replica) takes no write.
// The target takes every row; the source takes the capture's triggers, logs and log deletes, so
// only a --copy-only run (or dump-restore) may read from a standby. Found before anything is
// written: otherwise a run fails on its first write, the target's schema already created.
import type pg from 'pg';
import { q } from '../shared/db.js';
import type { Finding } from './findings.js';

export async function standbyProblems(src: pg.Client, dst: pg.Client, copyOnly: boolean): Promise<Finding[]> {
  const inRecovery = async (c: pg.Client, side: 'source' | 'target') =>
    (await q<{ r: boolean }>(c, side, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === true;
  const [source, target] = await Promise.all([inRecovery(src, 'source'), inRecovery(dst, 'target')]);
  const problems: Finding[] = [];
  if (target) {
    problems.push({
      code: 'target-standby',
      message: 'the target server is a standby (in recovery: a read replica): it takes no write',
      fix: "point --target at the new server's primary",
    });
  }
  if (source && !copyOnly) {
    problems.push({
      code: 'source-standby',
      message:
        'the source server is a standby (in recovery: a Heroku follower, a read replica): change capture needs to write its triggers and logs there',
      fix: 'point --source at the primary (on Heroku the leader, not a follower), or copy once from the standby with --copy-only',
    });
  }
  return problems;
}
