import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

/**
 * The SPIN model of the tracking protocol (model/ptrackd.pml), checked exhaustively, and each of its
 * mutations — one rule of the protocol broken by a one-line change — found by the checker with a
 * counterexample trail. model/check.sh does the work; spin comes from Debian's `spin` package.
 */
describe('the tracking protocol, model-checked (model/ptrackd.pml)', () => {
  it('never loses a changed page in any interleaving, and every broken rule is caught', async () => {
    const { stdout } = await promisify(execFile)('bash', [join(REPO_ROOT, 'model/check.sh')], {
      maxBuffer: 1 << 24,
    }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`model/check.sh failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
    });
    const lines = stdout.trim().split('\n');
    expect(
      lines
        .slice(0, 2)
        .map(
          (l) =>
            /^ok {4}(.*): no assertion violated in any interleaving \(\d+ states, exhaustive\)$/.exec(l)?.[1],
        ),
    ).toEqual(["the protocol with the server's faults", 'the protocol with the checkpoint log']);
    expect(
      lines.slice(2, -1).map((l) => /^ok {4}mutation "(.*)" is caught: assertion violated/.exec(l)?.[1]),
    ).toEqual([
      'flush position is the applied LSN',
      'applied LSN moves before marking',
      'catalog record before the map file',
      'query answered without waiting',
      'dirty bit set before the entry rises',
      'log record counted before it is durable',
      'failed checkpoint forgets its lines',
    ]);
    expect(lines.at(-1)).toBe('9 passed, 0 failed');
  }, 600_000);
});
