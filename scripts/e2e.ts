import { spawnSync } from 'node:child_process';

/** `npm run test:e2e -- --scale N`: the restore proof on pgbench scale N (CI runs it at scale 2). */
const at = process.argv.indexOf('--scale');
const scale = at >= 0 ? Number(process.argv[at + 1]) : 10;
if (!Number.isInteger(scale) || scale < 1) {
  process.stderr.write('usage: npm run test:e2e -- [--scale N]  (N a whole number >= 1)\n');
  process.exit(2);
}
const run = spawnSync(
  'npx',
  [
    'vitest',
    'run',
    'test/e2e',
    '--testTimeout',
    String(600_000 + scale * 60_000),
    '--hookTimeout',
    String(600_000 + scale * 60_000),
  ],
  {
    stdio: 'inherit',
    env: { ...process.env, PTRACKD_E2E_SCALE: String(scale) },
  },
);
process.exit(run.status ?? 1);
