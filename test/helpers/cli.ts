import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { REPO_ROOT } from './fixtures.ts';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs bin/ptrackd as a user would, capturing output and the exit code. */
export function runPtrackd(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // A variable given as undefined is removed from the environment (e.g. USER, to run as cron would).
    const env = Object.fromEntries(
      Object.entries({ ...process.env, ...options.env }).filter(([, v]) => v !== undefined),
    );
    const child = spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { env });
    // A test that times out must not leave the command running (a daemon holds its port and directory).
    try {
      onTestFinished(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
    } catch {
      // called from a hook rather than a test: the hook waits for the command itself
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}
