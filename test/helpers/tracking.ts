import { join } from 'node:path';
import { Catalog } from '../../src/catalog/index.ts';
import { findSegmentFiles, readSegments } from '../../src/cli/wal-files.ts';
import { entriesForMapSize, PtrackMap } from '../../src/map/index.ts';
import { WalApplier } from '../../src/tracker/index.ts';
import { type Lsn, parseLsn, WalStreamDecoder } from '../../src/wal/index.ts';
import type { PgCluster } from './pg-cluster.ts';
import { scratchDir } from './scratch.ts';

/**
 * What the daemon will do, done offline for tests: decodes a cluster's pg_wal from `start` to `end`
 * into a new map and catalog, with the cluster's identity read from the server.
 */
export async function trackFromWal(cluster: PgCluster, start: string, end: string, mapSizeMb = 8) {
  const [sysid, versionNum, catversion, blockSize, segmentSize] = (
    await cluster.sql(
      `SELECT system_identifier, current_setting('server_version_num'), catalog_version_no,
              current_setting('block_size'), (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')
       FROM pg_control_system()`,
    )
  ).split('|');
  const catalog = Catalog.open(join(scratchDir('ptrackd-catalog-'), 'catalog.db'));
  catalog.setIdentity({
    systemIdentifier: sysid,
    timeline: 1,
    serverVersionNum: Number(versionNum),
    catalogVersion: Number(catversion),
    blockSize: Number(blockSize),
    segmentSize: Number(segmentSize),
  });
  const startLsn = parseLsn(start);
  const endLsn = parseLsn(end);
  const map = PtrackMap.create(mapSizeMb, startLsn);
  catalog.initMap(mapSizeMb, entriesForMapSize(mapSizeMb), startLsn, 'test: tracking from a known LSN');
  const applier = new WalApplier(map, Number(blockSize), startLsn);
  const decoder = new WalStreamDecoder({
    startLsn,
    segmentSize: Number(segmentSize),
    major: Math.floor(Number(versionNum) / 10000),
  });
  outer: for (const piece of readSegments(
    findSegmentFiles([cluster.walDir]),
    Number(segmentSize),
    startLsn,
  )) {
    decoder.feed(piece.bytes, piece.lsn);
    while (decoder.position < endLsn) {
      const r = decoder.next();
      if (r === null) break;
      if (r.endLsn > endLsn) break outer;
      applier.apply(r);
    }
    catalog.applyOps(applier.takeOps());
  }
  catalog.applyOps(applier.takeOps());
  return { map, catalog, applier, appliedLsn: (): Lsn => applier.appliedLsn };
}
