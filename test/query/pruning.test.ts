import { closeSync, mkdirSync, openSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PtrackMap } from '../../src/map/index.ts';
import {
  LimitIndex,
  type PagemapRow,
  pagemapset,
  QueryEngine,
  RELSEG_SIZE,
  relationFilePath,
  relationFilesInCatalog,
  relationFilesInPgdata,
} from '../../src/query/index.ts';
import { ForkNumber } from '../../src/wal/index.ts';
import { happened, observed, scratchCatalog } from '../helpers/catalog.ts';
import { reportedBlocks } from '../helpers/oracle.ts';
import { scratchDir } from '../helpers/scratch.ts';

const INIT = 0x1000000;
const VERSION_DIR = 'PG_15_202209061';
/** A map this small makes most entries shared: every answer is full of collisions. */
const TINY_MAP = 61;

const forkArb = fc.record({
  where: fc.constantFrom(
    { spc: 1663, db: 5 },
    { spc: 1663, db: 6 },
    { spc: 1664, db: 0 },
    { spc: 16500, db: 5 },
  ),
  rel: fc.integer({ min: 16384, max: 16390 }),
  fork: fc.constantFrom(ForkNumber.main, ForkNumber.fsm, ForkNumber.vm),
});
const opArb = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('mark' as const),
      f: forkArb,
      // mostly the first 1 GB segment, sometimes the third: the second is then a file never named
      block: fc.oneof(
        { weight: 5, arbitrary: fc.nat(300) },
        { weight: 1, arbitrary: fc.integer({ min: 2 * RELSEG_SIZE, max: 2 * RELSEG_SIZE + 300 }) },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('create' as const), f: forkArb }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('truncate' as const), f: forkArb, nblocks: fc.nat(100) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), f: forkArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dbcopy' as const), f: forkArb }) },
);

/**
 * Random WAL histories over a few forks in a tiny map (collisions everywhere), each op at its own LSN,
 * and a question X somewhere in them. The answer that reads only files that can have changed since X
 * must equal the answer over every file, minus blocks of files nothing touched since X (which only
 * collisions put there); and it must hold every block WAL named at or after X.
 */
describe('pagemapset reads only files that can have changed since X (issue 31)', () => {
  it.each(['catalog', 'pgdata'] as const)(
    '%s mode: the pruned answer is the whole answer minus collision-only blocks of untouched files',
    (mode) => {
      let leftOut = 0; // blocks the pruned answers left out: the property is not vacuous
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.nat(60), (ops, xAt) => {
          const catalog = scratchCatalog(INIT, TINY_MAP);
          const map = PtrackMap.withEntries(TINY_MAP, INIT);
          const lsnOf = (i: number) => INIT + 0x100 * (i + 1);
          const x = lsnOf(Math.min(xAt, ops.length - 1));
          const namedSinceX = new Set<string>();
          /** The ground truth, kept here: each segment file's last LSN a block of it was named at. */
          const lastNamed = new Map<string, number>();
          const segmentPath = (spc: number, db: number, rel: number, fork: number, block: number) =>
            relationFilePath({ spc, db, rel, fork, segno: Math.floor(block / RELSEG_SIZE) }, VERSION_DIR);
          ops.forEach((op, i) => {
            const { spc, db } = op.f.where;
            const { rel, fork } = op.f;
            const lsn = lsnOf(i);
            if (op.kind === 'mark') {
              map.markBlock(spc, db, rel, fork, op.block, lsn);
              catalog.applyOps([observed(spc, db, rel, fork, op.block, lsn)]);
              const path = segmentPath(spc, db, rel, fork, op.block);
              lastNamed.set(path, lsn);
              if (lsn >= x) namedSinceX.add(`${path} ${op.block % RELSEG_SIZE}`);
            } else if (op.kind === 'create')
              catalog.applyOps([happened({ kind: 'create', spc, db, rel, fork }, lsn)]);
            else if (op.kind === 'truncate')
              catalog.applyOps([
                happened({ kind: 'truncate', spc, db, rel, nblocks: op.nblocks, flags: 3 }, lsn),
              ]);
            else if (op.kind === 'drop') catalog.applyOps([happened({ kind: 'drop', spc, db, rel }, lsn)]);
            else catalog.applyOps([happened({ kind: 'dbcopy', spc, db, srcSpc: 1663, srcDb: 1 }, lsn)]);
          });
          const pgdata = mode === 'pgdata' ? fakePgdata(catalog.relationForks()) : undefined;
          try {
            const engine = new QueryEngine({ map, catalog, pgdata, appliedLsn: () => lsnOf(ops.length) });
            const pruned = blocksOf(engine.pagemapset(x));
            const limits = new LimitIndex(catalog.limitEventsSince(x));
            const every = pgdata
              ? relationFilesInPgdata(pgdata, VERSION_DIR, 8192)
              : relationFilesInCatalog(catalog.relationForks(), VERSION_DIR);
            const whole = blocksOf(pagemapset(x, INIT, map, limits, every));
            const forkOf = (path: string) => path.replace(/\.\d+$/, '');
            const touched = (path: string) => {
              const f = catalog
                .relationForks()
                .find((r) => relationFilePath({ ...r, segno: 0 }, VERSION_DIR) === forkOf(path))!;
              return (
                f.fork === ForkNumber.fsm ||
                (lastNamed.get(path) ?? 0) >= x ||
                limits.limitFor(f.spc, f.db, f.rel, f.fork) !== Number.POSITIVE_INFINITY
              );
            };
            for (const b of pruned) expect(whole.has(b), `${b} only in the pruned answer`).toBe(true);
            leftOut += whole.size - pruned.size;
            for (const b of whole) {
              if (!pruned.has(b))
                expect(touched(b.split(' ')[0]!), `${b} left out of a touched file`).toBe(false);
            }
            const dropped = new Set(
              catalog
                .relationForks()
                .filter((f) => f.droppedLsn !== null)
                .map((f) => relationFilePath({ ...f, segno: 0 }, VERSION_DIR)),
            );
            for (const b of namedSinceX) {
              // (a block truncated away since, or of a dropped fork, is in neither answer)
              if (!dropped.has(forkOf(b.split(' ')[0]!)) && whole.has(b))
                expect(pruned.has(b), `${b}, named at or after X, missing`).toBe(true);
            }
          } finally {
            catalog.close();
            if (pgdata) rmSync(pgdata, { recursive: true, force: true });
          }
        }),
        // every file read whole for the comparison: a few hundred thousand lookups a run
        { numRuns: mode === 'pgdata' ? 25 : 40 },
      );
      expect(leftOut).toBeGreaterThan(0);
    },
    120_000,
  );
});

function blocksOf(rows: Iterable<PagemapRow>): Set<string> {
  return reportedBlocks(rows);
}

/**
 * A PGDATA holding each fork the catalog knows, as long as it says, in sparse 1 GB segment files
 * (dropped forks too: a file may outlive its drop record).
 */
function fakePgdata(
  forks: readonly { spc: number; db: number; rel: number; fork: number; maxBlock: number }[],
) {
  const root = scratchDir('ptrackd-pruning-');
  for (const f of forks) {
    const blocks = Math.max(f.maxBlock, 0) + 1;
    for (let segno = 0; segno * RELSEG_SIZE < blocks; segno++) {
      const path = join(root, relationFilePath({ ...f, segno }, VERSION_DIR));
      mkdirSync(join(path, '..'), { recursive: true });
      closeSync(openSync(path, 'w'));
      truncateSync(path, Math.min(RELSEG_SIZE, blocks - segno * RELSEG_SIZE) * 8192);
    }
  }
  return root;
}
