import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';

describe('JSON log lines', () => {
  it('carry the level by name and the time in ISO 8601 UTC', () => {
    const lines: string[] = [];
    const log = createLogger({ pretty: false, level: 'debug', write: (l) => lines.push(l) });
    const before = Date.now();
    log.info({ phase: 'copy' }, 'copy started');
    log.child({ table: 'public.t' }).warn('slow');
    expect(lines).toHaveLength(2);
    const [info, warn] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(info).toMatchObject({ level: 'info', msg: 'copy started', phase: 'copy', app: 'pgferry' });
    expect(warn).toMatchObject({ level: 'warn', msg: 'slow', table: 'public.t' });
    expect(info!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    const at = Date.parse(info!.time as string);
    expect(at).toBeGreaterThanOrEqual(before - 1);
    expect(at).toBeLessThanOrEqual(Date.now());
  });
});
