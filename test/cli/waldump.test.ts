import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { loadFixture, readTsv } from '../helpers/fixtures.ts';
import { pgBinDir } from '../helpers/pg-cluster.ts';

const fixture = loadFixture('pg16');
const range = ['--start', formatLsn(fixture.startLsn), '--end', formatLsn(fixture.endLsn)];
const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-waldump-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Copies the fixture's segments, gunzipped, into a new directory; `mutate` may damage them. */
function plainSegments(name: string, mutate?: (files: string[]) => void): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  const files = (fixture.meta.segments as string[]).map((s) => {
    const out = join(dir, s.replace(/\.gz$/, ''));
    writeFileSync(
      out,
      gunzipSync(readFileSync(join(fixture.segmentsDir, s.endsWith('.gz') ? s : `${s}.gz`))),
    );
    return out;
  });
  mutate?.(files);
  return dir;
}

describe('ptrackd waldump', () => {
  it('--blocks prints one `<LSN> <spc>/<db>/<rel> <fork> <block>` line per block reference, gzip or plain', async () => {
    const expected = readTsv(fixture, 'blockrefs.tsv.gz').map(
      ([lsn, , , rel, fork, block]) => `${formatLsn(parseLsn(lsn))} ${rel} ${fork} ${block}`,
    );
    const gz = await runPtrackd(['waldump', '--blocks', ...range, fixture.segmentsDir]);
    expect(gz.code).toBe(0);
    expect(gz.stdout.trimEnd().split('\n')).toEqual(expected);
    const plain = await runPtrackd(['waldump', '--blocks', ...range, plainSegments('plain')]);
    expect(plain.stdout).toBe(gz.stdout);
  });

  it('--implied adds the VM pages whose bits heap records clear, each line ending in "implied"', async () => {
    const r = await runPtrackd(['waldump', '--blocks', '--implied', ...range, fixture.segmentsDir]);
    const implied = r.stdout.split('\n').filter((l) => l.endsWith(' implied'));
    expect(implied.length).toBeGreaterThan(50);
    expect(implied.every((l) => / \d+\/\d+\/\d+ vm \d+ implied$/.test(l))).toBe(true);
  });

  it('--events and --format json print the events, JSON one object per line', async () => {
    const text = await runPtrackd(['waldump', '--events', ...range, fixture.segmentsDir]);
    const json = await runPtrackd(['waldump', '--events', '--format', 'json', ...range, fixture.segmentsDir]);
    const lines = text.stdout.trimEnd().split('\n');
    const objects = json.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(objects.length).toBe(lines.length);
    expect(lines).toContain(`${objects.find((o) => o.kind === 'dbcopy').lsn} dbcopy 1663/16452 from 1663/1`);
    expect(
      objects.filter((o) => o.kind === 'create').every((o) => ['main', 'fsm', 'vm', 'init'].includes(o.fork)),
    ).toBe(true);
  });

  it('--stats prints what pg_waldump --stats prints', async () => {
    const r = await runPtrackd(['waldump', '--stats', ...range, fixture.segmentsDir]);
    expect(r.stdout).toBe(readFileSync(join(fixture.dir, 'waldump-stats.txt'), 'utf8'));
  });

  it("--stats over a range that starts and ends mid-record prints what PostgreSQL 15's pg_waldump prints", async () => {
    const pg15 = loadFixture('pg15');
    const dir = join(scratch, 'pg15');
    mkdirSync(dir);
    for (const s of pg15.meta.segments as string[]) {
      writeFileSync(join(dir, s.replace(/\.gz$/, '')), gunzipSync(readFileSync(join(pg15.segmentsDir, s))));
    }
    // page boundaries, neither a record's start or end; the range ends after an XLOG_SWITCH record,
    // inside the rest of the segment it closes, and both views count per record type: Transaction
    // records' flag bit (XLOG_XACT_HAS_INFO) is no type of its own
    const from = formatLsn(pg15.startLsn + 3 * 8192 - ((pg15.startLsn + 3 * 8192) % 8192));
    const to = formatLsn(pg15.endLsn - 5 * 8192 - ((pg15.endLsn - 5 * 8192) % 8192));
    const ours = await runPtrackd(['waldump', '--stats=record', '--start', from, '--end', to, dir]);
    const theirs = spawnSync(
      join(pgBinDir(), 'pg_waldump'),
      ['--stats=record', '-p', dir, '-s', from, '-e', to],
      {
        encoding: 'utf8',
      },
    );
    expect(theirs.status, theirs.stderr).toBe(0);
    expect(theirs.stdout).toMatch(/^first record is after .*\nWAL statistics between .*\n.*XLOG\/SWITCH/s);
    expect(ours.stdout).toBe(theirs.stdout);
  });

  it('a damaged record exits 1 naming the LSN and the file', async () => {
    const records = readTsv(fixture, 'records.tsv.gz');
    const target = parseLsn(records[5000][0]);
    const segment = Math.floor(target / fixture.segmentSize);
    const dir = plainSegments('damaged', (files) => {
      const file = files.find((f) => f.endsWith(segment.toString(16).toUpperCase().padStart(8, '0')))!;
      const bytes = readFileSync(file);
      bytes[(target % fixture.segmentSize) + 26] ^= 0x04;
      writeFileSync(file, bytes);
    });
    const r = await runPtrackd(['waldump', '--blocks', ...range, dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`checksum`);
    expect(r.stderr).toContain(`at ${formatLsn(target)}`);
    expect(r.stderr).toMatch(/in [0-9A-F]{24}: /);
  });

  it('a truncated last file is a clean end of WAL (exit 0), or an error when --end lies beyond it', async () => {
    const dir = plainSegments('truncated', (files) => {
      const last = files[10];
      writeFileSync(last, readFileSync(last).subarray(0, 300_000));
      for (const f of files.slice(11)) rmSync(f);
    });
    const open = await runPtrackd(['waldump', '--blocks', '--start', formatLsn(fixture.startLsn), dir]);
    expect(open.code).toBe(0);
    expect(open.stderr).toMatch(/end of WAL at 0\/[0-9A-F]+: the files end there/);
    const bounded = await runPtrackd(['waldump', '--blocks', ...range, dir]);
    expect(bounded.code).toBe(1);
    expect(bounded.stderr).toMatch(/WAL ends at .* before --end/);
  });

  it('a missing segment in the middle is an error naming where', async () => {
    const dir = plainSegments('gap', (files) => rmSync(files[4]));
    const r = await runPtrackd(['waldump', '--blocks', ...range, dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing WAL segment/);
  });

  it.each([
    [['waldump', '--start', 'nonsense', 'x'], 2, /invalid LSN "nonsense"/],
    [['waldump', '--blocks', '--events', 'x'], 2, /choose one of/],
    [['waldump', '/no/such/dir'], 1, /could not open "\/no\/such\/dir"/],
    [['waldump', '--stats=bogus', 'x'], 2, /--stats takes/],
    [['bogus-command'], 2, /unknown command "bogus-command"/],
  ])('refuses %j with exit %i', async (args, code, message) => {
    const r = await runPtrackd(args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('reads a single named file', async () => {
    const dir = plainSegments('single');
    const name = (fixture.meta.segments as string[])[3].replace(/\.gz$/, '');
    copyFileSync(join(dir, name), join(scratch, name));
    for (const stats of ['--stats', '--stats=record']) {
      const r = await runPtrackd(['waldump', stats, join(scratch, name)]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Total\s+\d+/m);
      // Per record type, rows are named rmgr/TYPE; per resource manager, every built-in one is listed.
      expect(/^\w+\/[A-Z_+]+ /m.test(r.stdout)).toBe(stats === '--stats=record');
      expect(/^CLOG /m.test(r.stdout)).toBe(stats === '--stats');
    }
  });
});
