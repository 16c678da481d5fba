import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { followArgs } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

const DOCKERFILE = readFileSync(join(REPO_ROOT, 'deploy/docker/Dockerfile'), 'utf8');
/** The image's ENTRYPOINT, pointed at a directory instead of /app. */
const entrypoint = (app: string): string[] =>
  (JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(DOCKERFILE)![1]) as string[]).map((a) =>
    a.replace(/^\/app\//, `${app}/`),
  );

/**
 * There is no container engine here, so this runs what the Dockerfile runs: its install script into a
 * fresh directory, then its ENTRYPOINT from there, as a user who cannot write to it (the image's
 * read-only root filesystem and non-root UID).
 */
describe('the container image, built the way the Dockerfile builds it', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-image-'));
  const app = join(scratch, 'app');
  let cluster: PgCluster;
  const asRoot = process.getuid?.() === 0;
  /** The entrypoint's command, run as a user without write access to `app` (postgres when we are root). */
  let nodeForUser = process.execPath; // the image's node; see beforeAll
  const command = (args: string[]): [string, string[]] => {
    const [node, ...rest] = entrypoint(app);
    return [node === 'node' ? nodeForUser : node, [...rest, ...args]];
  };
  const user = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
        gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
      }
    : {};

  beforeAll(async () => {
    expect(DOCKERFILE).toMatch(/^RUN \/src\/deploy\/docker\/install\.sh \/src \/app$/m);
    execFileSync(join(REPO_ROOT, 'deploy/docker/install.sh'), [REPO_ROOT, app], { stdio: 'ignore' });
    chmodSync(scratch, 0o755);
    if (!asRoot) execFileSync('chmod', ['-R', 'a-w', app]);
    cluster = await PgCluster.start();
    // this Node lives in the checkout, which that user may not be able to enter
    nodeForUser = cluster.serverUserProgram(process.execPath);
  }, 180_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (!asRoot) execFileSync('chmod', ['-R', 'u+w', app]);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('holds the runtime dependencies only', () => {
    expect(existsSync(join(app, 'node_modules/better-sqlite3'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/piscina'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/vitest'))).toBe(false);
    expect(existsSync(join(app, 'node_modules/typescript'))).toBe(false);
  });

  it('answers --help', () => {
    const [cmd, argv] = command(['--help']);
    const out = execFileSync(cmd, argv, { encoding: 'utf8', ...user });
    expect(out).toMatch(/--slot/);
    expect(out).toMatch(/--wait-for-server/);
    // The command the image links onto PATH, for kubectl exec.
    expect(DOCKERFILE).toMatch(/^RUN ln -s \/app\/bin\/ptrackd \/usr\/local\/bin\/ptrackd$/m);
    // the wrapper takes the first node on PATH: the image's, here the one that user can run
    const path = `${dirname(nodeForUser)}:${process.env.PATH}`;
    const viaPath = execFileSync(join(app, 'bin/ptrackd'), ['sql', '--help'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: path },
      ...user,
    });
    expect(viaPath).toMatch(/--wait-lsn/);
  });

  it('follows a server, becomes ready, and on SIGTERM checkpoints and exits 0', async () => {
    const dataDir = join(scratch, 'data');
    execFileSync('mkdir', ['-m', '777', dataDir]);
    const port = await freePort();
    const [cmd, argv] = command([
      ...followArgs(cluster, 'ptrack', dataDir),
      '--map-size',
      '8',
      '--listen',
      `127.0.0.1:${port}`,
    ]);
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...user });
    let output = '';
    child.stdout.on('data', (b) => (output += b));
    child.stderr.on('data', (b) => (output += b));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    for (const deadline = Date.now() + 30_000; ; ) {
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (ready === 200) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`not ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toMatch(/checkpoint at [0-9A-F]+\/[0-9A-F]+ \(shutdown\)/);
    expect(existsSync(join(dataDir, 'ptrack.map'))).toBe(true);
  }, 60_000);
});
