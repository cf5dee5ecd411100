import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real PostgreSQL clusters: two at a time fits a 2-core machine.
    maxWorkers: 2,
    testTimeout: 120_000,
    // Test clusters copy a data directory made by initdb once per server build (src/embedded/cluster.ts).
    env: { PGFERRY_CLUSTER_TEMPLATES: path.join(os.tmpdir(), 'pgferry-cluster-templates') },
    hookTimeout: 120_000,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
