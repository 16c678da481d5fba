import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  ArchiveError,
  fetchSegments,
  parseTimelineHistory,
  RestoreCommand,
  segmentFileName,
  timelineOfPoint,
  timelineOfSegment,
} from '../../src/archive/index.ts';
import { parseLsn } from '../../src/wal/index.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { FIXTURES_DIR } from '../helpers/fixtures.ts';
import { scratchDir } from '../helpers/scratch.ts';

/** A directory archive (archive_command's `cp %p /archive/%f`) of one fixture's segments, plain files. */
function archiveOf(fixture: string): string {
  const dir = scratchDir('ptrackd-archive-test-');
  const segments = join(FIXTURES_DIR, fixture, 'segments');
  for (const name of readdirSync(segments)) {
    if (name.endsWith('.gz'))
      writeFileSync(join(dir, name.slice(0, -3)), gunzipSync(readFileSync(join(segments, name))));
    else copyFileSync(join(segments, name), join(dir, name));
  }
  return dir;
}

const meta = (fixture: string) => JSON.parse(readFileSync(join(FIXTURES_DIR, fixture, 'meta.json'), 'utf8'));
const PG15 = meta('pg15');
const copyFrom = (dir: string) => new RestoreCommand(`cp ${dir}/%f "%p"`, { timeoutMs: 20_000 });

async function fetchAll(command: RestoreCommand, end?: string) {
  const out: { file: string; lsn: number; bytes: Uint8Array }[] = [];
  for await (const s of fetchSegments(command, {
    tli: 1,
    start: parseLsn(PG15.start_lsn),
    end: end === undefined ? undefined : parseLsn(end),
  })) {
    out.push({ file: s.file, lsn: s.lsn, bytes: s.bytes() });
  }
  return out;
}

describe('reading WAL from an archive through a restore_command', () => {
  it('names segment files as PostgreSQL does (the fixtures’ own names are the oracle)', () => {
    const names = readdirSync(join(FIXTURES_DIR, 'pg15', 'segments'))
      .map((n) => n.slice(0, 24))
      .sort();
    expect(segmentFileName(1, parseLsn(PG15.start_lsn), 1 << 20)).toBe(names[0]);
    expect(segmentFileName(1, parseLsn(PG15.end_lsn), 1 << 20)).toBe(names.at(-1));
    expect(segmentFileName(2, parseLsn('1/01000000'), 16 << 20)).toBe('000000020000000100000001');
    expect(segmentFileName(3, parseLsn('A/FFFFFFFF'), 1 << 30)).toBe('000000030000000A00000003');
  });

  it('fetches every segment of the range, found to be 1 MB ones, byte for byte the archived files', async () => {
    const archive = archiveOf('pg15');
    const fetched = await fetchAll(copyFrom(archive), PG15.end_lsn);
    expect(fetched.map((s) => s.file)).toEqual(readdirSync(archive).sort());
    for (const s of fetched)
      expect(Buffer.compare(s.bytes as Buffer, readFileSync(join(archive, s.file)))).toBe(0);
    // without an end, until the archive has no next segment
    expect((await fetchAll(copyFrom(archive))).length).toBe(fetched.length);
  });

  it('ptrackd waldump --restore-command decodes what reading the directory decodes', async () => {
    const archive = archiveOf('pg15');
    const range = ['--blocks', '--start', PG15.start_lsn, '--end', PG15.end_lsn];
    const fromArchive = await runPtrackd(['waldump', ...range, '--restore-command', `cp ${archive}/%f "%p"`]);
    const fromDirectory = await runPtrackd(['waldump', ...range, archive]);
    expect(fromArchive.code, fromArchive.stderr).toBe(0);
    expect(fromArchive.stdout.split('\n').length).toBeGreaterThan(70_000);
    expect(fromArchive.stdout).toBe(fromDirectory.stdout);
  });

  it.each([
    [
      'a segment missing before --end',
      (dir: string, names: string[]) => rmSync(join(dir, names[5])),
      /00000001000000000000000B \(WAL from 0\/B00000\) is not in the archive/,
    ],
    [
      'a truncated segment',
      (dir: string, names: string[]) =>
        writeFileSync(join(dir, names[3]), readFileSync(join(dir, names[3])).subarray(0, 100_000)),
      /00000001000000000000000[9] is 100000 bytes, not a whole 1048576-byte segment/,
    ],
    [
      'a segment of another cluster',
      (dir: string, names: string[]) => copyFileSync(join(archiveOf('pg14'), names[2]), join(dir, names[2])),
      /000000010000000000000008 is from another cluster \(system \d+, not \d+\)/,
    ],
    [
      'a segment under another segment’s name',
      (dir: string, names: string[]) => copyFileSync(join(dir, names[3]), join(dir, names[2])),
      /000000010000000000000008 holds WAL from 0\/900000, not from 0\/800000 as its name says/,
    ],
    [
      'a file that is not WAL',
      (dir: string, names: string[]) => writeFileSync(join(dir, names[1]), Buffer.alloc(1 << 20, 7)),
      /000000010000000000000007 is not a WAL segment of PostgreSQL 13 to 18/,
    ],
  ])('%s is an error naming the file, never WAL used', async (_name, damage, message) => {
    const archive = archiveOf('pg15');
    damage(archive, readdirSync(archive).sort());
    await expect(fetchAll(copyFrom(archive), PG15.end_lsn)).rejects.toThrow(message);
  });

  it('a command that hangs is killed after its timeout; one that fails means "not in the archive"', async () => {
    const hanging = new RestoreCommand('sleep 30; cp /nowhere/%f "%p"', { timeoutMs: 500 });
    await expect(fetchAll(hanging)).rejects.toThrow(
      /the restore command for \w+ did not finish within 0.5 s/,
    );
    await expect(fetchAll(new RestoreCommand('exit 1 # %f %p'))).rejects.toThrow(
      /the archive has no segment holding 0\/600800 on timeline 1 \(asked for 000000010000000000000000, 000000010000000000000006, /,
    );
  });

  it('substitutes only names it made, and needs %f and %p', async () => {
    expect(() => new RestoreCommand('cp /archive/%f /tmp/x')).toThrow(ArchiveError);
    const command = new RestoreCommand('cp /archive/%f "%p"');
    await expect(
      command.restore('000000010000000000000001', '/tmp/a"; rm -rf /tmp/x; "', 'x'),
    ).rejects.toThrow(/refusing to pass/);
  });
});

/** pg17-tli2 is a standby of pg17's primary, promoted: its history file and first segment are PostgreSQL's. */
describe('timelines in the archive, as recovery follows them', () => {
  const TLI2 = meta('pg17-tli2');
  const historyText = () =>
    readFileSync(join(FIXTURES_DIR, 'pg17-tli2', 'segments', '00000002.history'), 'utf8');
  const MB = 1 << 20;

  it('reads a history file: the switch point is where timeline 2 begins, and its segment is read from timeline 2', () => {
    const switchLsn = parseLsn(TLI2.switch_lsn);
    const history = parseTimelineHistory(historyText(), 2, '00000002.history');
    expect(history).toEqual([
      { tli: 1, begin: 0, end: switchLsn },
      { tli: 2, begin: switchLsn, end: Infinity },
    ]);
    expect(timelineOfPoint(history, switchLsn - 8)).toBe(1);
    expect(timelineOfPoint(history, switchLsn)).toBe(2);
    // the switch happened in the middle of a segment: that whole segment comes from the new timeline
    expect(timelineOfSegment(history, Math.floor(switchLsn / MB), MB)).toBe(2);
    expect(timelineOfSegment(history, Math.floor(switchLsn / MB) - 1, MB)).toBe(1);
    expect(() => parseTimelineHistory('2\t0/100\tx\n', 2, 'h')).toThrow(/does not continue the history/);
    expect(() => parseTimelineHistory('1\tnowhere\n', 2, 'h')).toThrow(
      /is not "timeline switchpoint reason"/,
    );
  });

  it('fetches across a switch: the history from the archive, each segment from its own timeline', async () => {
    const archive = archiveOf('pg17');
    for (const name of readdirSync(archiveOf('pg17-tli2'), { withFileTypes: true }))
      copyFileSync(join(name.parentPath, name.name), join(archive, name.name));
    const fetched: string[] = [];
    const range = { tli: 2, start: parseLsn(TLI2.start_lsn), end: parseLsn(TLI2.end_lsn) };
    for await (const s of fetchSegments(copyFrom(archive), range)) fetched.push(s.file);
    // its first page is timeline 1's WAL, copied at the promotion: accepted
    expect(TLI2.first_segment_page_tli).toBe(1);
    expect(fetched).toEqual(TLI2.segments.map((n: string) => n.slice(0, 24)));
    // from before the switch: timeline 1's files, up to the one the fixtures lack (named for timeline 1)
    const before = { ...range, start: parseLsn(meta('pg17').end_lsn) };
    const files: string[] = [];
    const reading = (async () => {
      for await (const s of fetchSegments(copyFrom(archive), before)) files.push(s.file);
    })();
    await expect(reading).rejects.toThrow(
      /^00000001000000000000001F \(WAL from 0\/1F00000\) is not in the archive/,
    );
    expect(files).toEqual(['00000001000000000000001E']);
    // a timeline whose history the archive lacks cannot be followed
    await expect(fetchSegments(copyFrom(archive), { ...range, tli: 3 }).next()).rejects.toThrow(
      /00000003.history \(the history of timeline 3\) is not in the archive/,
    );
  });

  it('ptrackd waldump --restore-command --timeline 2 decodes what reading the directory decodes', async () => {
    const archive = archiveOf('pg17-tli2');
    const range = ['--blocks', '--timeline', '2', '--start', TLI2.start_lsn, '--end', TLI2.end_lsn];
    const fromArchive = await runPtrackd(['waldump', ...range, '--restore-command', `cp ${archive}/%f "%p"`]);
    const fromDirectory = await runPtrackd(['waldump', ...range, archive]);
    expect(fromArchive.code, fromArchive.stderr).toBe(0);
    expect(fromArchive.stdout.trimEnd().split('\n').length).toBe(TLI2.block_refs); // pg_waldump's count
    expect(fromArchive.stdout).toBe(fromDirectory.stdout);
  });
});
