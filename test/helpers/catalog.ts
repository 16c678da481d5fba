import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/index.ts';

/** A fresh catalog for a PostgreSQL 15 cluster with 8 kB blocks, in a temp dir. */
export function scratchCatalog(initLsn: number, entries = 4099): Catalog {
  const catalog = Catalog.open(join(mkdtempSync(join(tmpdir(), 'ptrackd-catalog-')), 'catalog.db'));
  catalog.setIdentity({
    systemIdentifier: '7000000000000000001',
    timeline: 1,
    serverVersionNum: 150018,
    catalogVersion: 202209061,
    blockSize: 8192,
    segmentSize: 16 << 20,
  });
  catalog.initMap(1, entries, initLsn, 'test');
  return catalog;
}
