import type pg from 'pg';
import {
  ArchiveError,
  fetchSegments,
  RestoreCommand,
  spanOf,
  type TimelineHistory,
} from '../archive/index.ts';
import type { Catalog } from '../catalog/index.ts';
import { entriesForMapSize, PtrackMap } from '../map/index.ts';
import { catalogVersion, dropSlot, type ServerInfo, slotState } from '../replication/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';
import { FollowError } from './failures.ts';
import { SlotError, type TrackerOptions } from './options.ts';

/** What the Tracker lends MapContinuity: its state, and the checkpoints and archive decoding it runs. */
export interface ContinuityHost {
  readonly options: TrackerOptions;
  /** The server's plain-SQL connection settings. */
  readonly sql: pg.ClientConfig;
  readonly catalog: Catalog;
  readonly server: ServerInfo;
  /** The server's timeline and those before it. */
  readonly history: TimelineHistory;
  readonly suggestedMapSizeMb: number;
  readonly map: PtrackMap;
  /** How far WAL is applied: where streaming resumes. */
  appliedLsn: Lsn;
  readonly checkpointLsn: Lsn;
  /** Makes `map` the map, before its first checkpoint. */
  adoptMap(map: PtrackMap): void;
  /** Waits for a checkpoint being written, if one is. */
  settleCheckpoint(): Promise<void>;
  /** Writes a checkpoint at the applied LSN now (after one being written). */
  checkpoint(why: string): Promise<void>;
  /**
   * Decodes WAL from the archive, from the applied LSN through the segment holding `until`; null when it
   * got there, else the first file missing from the archive (anything else wrong with it is thrown).
   */
  decodeArchive(until: Lsn): Promise<string | null>;
  /** Loads the map from its last checkpoint (once per process); `mapSizeMb` is the size it has. */
  loadMap(mapSizeMb: number): void;
}

/**
 * Where the map starts and resumes, and how what is missing gets filled: a new map at the slot (first
 * start, --reinit, another cluster) or in the past (--init-from, the archive decoded up to the slot); on
 * resuming, the server's timeline joined, WAL the slot lost read from the archive, and what no one has
 * recorded as a gap (init_lsn moves, the history says why). Continuity is only ever broken here.
 */
export class MapContinuity {
  readonly #h: ContinuityHost;
  /** Why the slot lost WAL we needed, when inspectSlot or releaseRemovedWal found out. */
  #lostWal: string | undefined;

  constructor(host: ContinuityHost) {
    this.#h = host;
  }

  get #o(): TrackerOptions {
    return this.#h.options;
  }

  get #sql(): pg.ClientConfig {
    return this.#h.sql;
  }

  /**
   * Where following starts once the server has answered: the catalog records which cluster it is; a
   * new map for another cluster than the one recorded before (a gap); at the slot on first start or
   * --reinit, or in the past with --init-from; else the map as checkpointed, resumed (resume). A data
   * directory that follows another slot is refused before any slot is made (`createSlot`: true when it
   * had to be made).
   */
  async begin(o: { readonly reinit: boolean; readonly createSlot: () => Promise<boolean> }): Promise<Lsn> {
    const { reinit } = o;
    const server = this.#h.server;
    const catalog = this.#h.catalog;
    const known = catalog.identity();
    const otherCluster = known !== null && known.systemIdentifier !== server.systemId;
    catalog.setIdentity({
      systemIdentifier: server.systemId,
      // The map's timeline changes only once its position is known to be on this server's history.
      timeline: known && !otherCluster ? known.timeline : server.timeline,
      serverVersionNum: server.versionNum,
      catalogVersion: known && !otherCluster ? known.catalogVersion : await catalogVersion(this.#sql),
      blockSize: server.blockSize,
      segmentSize: server.segmentSize,
    });
    const slot = this.#o.slot;
    const dataDir = this.#o.dataDir;
    const followed = catalog.mapState()?.slotName;
    if (followed && followed !== slot && !reinit) {
      throw new SlotError(
        `data directory ${dataDir} follows slot ${followed}, not ${slot}: its map holds what that slot delivered. ` +
          `Start with --slot ${followed}; or stop tracking with "ptrackd drop --slot ${followed} --data-dir ${dataDir}"; ` +
          `or add --reinit to start a new map with slot ${slot} (history is lost, and slot ${followed} stays on the server until dropped)`,
      );
    }
    const created = await o.createSlot();
    const state = catalog.mapState();
    if (state && state.slotName !== slot && !reinit) catalog.setSlotName(slot);
    if (otherCluster) {
      const why = `the server is system ${server.systemId}, not ${known.systemIdentifier}: another cluster answers at this address`;
      return this.startMap(`${why}; a new map starts`, 'gap');
    }
    if (!state || reinit) {
      catalog.setTimeline(server.timeline);
      const why = !state
        ? created
          ? `slot ${slot} created`
          : `tracking started with slot ${slot}`
        : `--reinit: a new map replaces the one from ${formatLsn(state.initLsn)}`;
      if (this.#o.initFrom === undefined) return this.startMap(why, 'init');
      return this.startMapInThePast(this.#o.initFrom, why);
    }
    this.#h.loadMap(state.mapSizeMb);
    return this.#resume(known?.timeline ?? server.timeline, created);
  }

  /**
   * Where streaming resumes for a map loaded from its checkpoint, on timeline `mapTli`: on the server's
   * timeline (#joinTimeline), and from the slot; WAL the slot no longer holds is read from the archive,
   * and what it lacks too is a gap. `created`: the slot had to be made again just now.
   */
  async #resume(mapTli: number, created: boolean): Promise<Lsn> {
    const slot = this.#o.slot;
    const onOtherBranch = await this.#joinTimeline(mapTli);
    if (onOtherBranch) return onOtherBranch;
    // A slot that had to be created again, or that kept less than we need, may start after our position.
    const restart = (await slotState(this.#sql, slot))?.restartLsn ?? null;
    if (restart !== null && restart > this.#h.appliedLsn) {
      const why =
        this.#lostWal ??
        (created ? `slot ${slot} was missing and was created again` : `slot ${slot} no longer holds the WAL`);
      this.#lostWal = undefined;
      const from = this.#h.appliedLsn;
      const missing = this.#o.restoreCommand === undefined ? undefined : await this.#h.decodeArchive(restart);
      if (missing === null) {
        this.#o.log(
          'info',
          `${why}: WAL from ${formatLsn(from)} read from the archive up to ${formatLsn(this.#h.appliedLsn)}: no gap`,
        );
        return this.#h.appliedLsn;
      }
      const archive = missing === undefined ? '' : `, and the archive does not have it either (${missing})`;
      return await this.#gap(
        restart,
        `${why}: WAL from ${formatLsn(this.#h.appliedLsn)} to ${formatLsn(restart)} is gone${archive}`,
      );
    }
    this.#lostWal = undefined;
    return this.#h.appliedLsn;
  }

  /**
   * The map's position is on timeline `mapTli`; the server is on its own. Where the server's history
   * left `mapTli` before that position (a failover to a standby promoted while the old primary went on),
   * what was applied past the switch is not this server's WAL: tracking goes back to the switch point
   * and reads the server's timeline from there (the marks already made only add false positives). A
   * timeline not in the server's history at all cannot be placed: that is a gap.
   */
  async #joinTimeline(mapTli: number): Promise<Lsn | undefined> {
    const server = this.#h.server;
    if (mapTli === server.timeline) return undefined;
    const span = spanOf(this.#h.history, mapTli);
    if (!span) {
      const restart = (await slotState(this.#sql, this.#o.slot))?.restartLsn ?? server.xlogPos;
      const at = await this.#gap(
        restart,
        `the map followed timeline ${mapTli}, which is not in the history of the server's timeline ${server.timeline}`,
      );
      this.#h.catalog.setTimeline(server.timeline);
      return at;
    }
    if (span.end < this.#h.appliedLsn) {
      this.#o.log(
        'warn',
        `timeline ${mapTli} ended at ${formatLsn(span.end)} on this server, before the map's position ${formatLsn(this.#h.appliedLsn)}: ` +
          `WAL from ${formatLsn(span.end)} is read again from timeline ${server.timeline}`,
      );
      await this.#h.settleCheckpoint();
      this.#h.appliedLsn = span.end;
      await this.#h.checkpoint('timeline switch');
      if (this.#h.checkpointLsn !== span.end)
        throw new Error(`could not record the move back to the switch point ${formatLsn(span.end)}`);
    }
    this.#h.catalog.setTimeline(server.timeline);
    return undefined;
  }

  /** A new map from the slot's restart LSN (first start, or another cluster). */
  async startMap(why: string, kind: 'init' | 'gap'): Promise<Lsn> {
    const restart = (await slotState(this.#sql, this.#o.slot))?.restartLsn ?? null;
    if (restart === null) {
      throw new SlotError(
        `slot ${this.#o.slot} reserves no WAL (create it with RESERVE_WAL, or let ptrackd create it)`,
      );
    }
    await this.#newMap(restart, why, kind);
    this.#o.log(kind === 'gap' ? 'warn' : 'info', `tracking from ${formatLsn(restart)} (${why})`);
    return restart;
  }

  /**
   * A new map whose history starts at `initLsn`, before the slot's restart LSN: the archive is decoded
   * from there up to the slot. The first segment is fetched before anything is written, so an init LSN
   * older than the archive fails at once, naming the file.
   */
  async startMapInThePast(initLsn: Lsn, why: string): Promise<Lsn> {
    const restart = (await slotState(this.#sql, this.#o.slot))?.restartLsn ?? null;
    if (restart === null) throw new SlotError(`slot ${this.#o.slot} reserves no WAL`);
    if (initLsn > restart) {
      throw new ArchiveError(
        `--init-from ${formatLsn(initLsn)} is after the slot's restart LSN ${formatLsn(restart)}: nothing to read from the archive`,
      );
    }
    const server = this.#h.server;
    const range = {
      tli: server.timeline,
      history: this.#h.history,
      start: initLsn,
      end: initLsn,
      segmentSize: server.segmentSize,
      systemId: server.systemId,
    };
    const first = fetchSegments(restoreCommand(this.#o), range);
    try {
      await first.next(); // there, whole and ours, or an ArchiveError
    } finally {
      await first.return(undefined); // its scratch directory goes
    }
    await this.#newMap(initLsn, `${why}; --init-from ${formatLsn(initLsn)} (the archive)`, 'init');
    this.#o.log(
      'info',
      `tracking from ${formatLsn(initLsn)} (--init-from): reading the archive up to the slot at ${formatLsn(restart)}`,
    );
    const missing = await this.#h.decodeArchive(restart);
    if (missing !== null) {
      return this.#gap(
        restart,
        `the archive ends before the slot's restart LSN ${formatLsn(restart)} (${missing})`,
      );
    }
    return this.#h.appliedLsn;
  }

  /** A new, empty map whose history starts at `initLsn`, recorded and checkpointed. */
  async #newMap(initLsn: Lsn, why: string, kind: 'init' | 'gap'): Promise<void> {
    const mapSizeMb = this.#o.mapSizeMb ?? this.#h.suggestedMapSizeMb;
    await this.#h.settleCheckpoint(); // of the map this one replaces
    const map = PtrackMap.create(mapSizeMb, initLsn);
    this.#h.catalog.initMap(mapSizeMb, entriesForMapSize(mapSizeMb), initLsn, why, kind);
    this.#h.catalog.setSlotName(this.#o.slot);
    this.#h.adoptMap(map);
    this.#h.appliedLsn = initLsn;
    await this.#h.checkpoint('initial');
  }

  /** Continuity is broken: history before `at` is incomplete. init_lsn moves there and says why. */
  async #gap(at: Lsn, why: string): Promise<Lsn> {
    await this.#h.settleCheckpoint();
    this.#h.catalog.moveInitLsn(at, why);
    this.#h.map.initLsn = at;
    this.#h.appliedLsn = at;
    await this.#h.checkpoint('gap');
    this.#o.log('warn', `gap: ${why}; init_lsn is now ${formatLsn(at)}`);
    return at;
  }

  /**
   * Waits up to `ms` for no other process to stream from the slot (a walsender of ours that the server
   * has not yet seen go, after a kill or a cut connection), then refuses with who holds it.
   */
  async awaitSlotFree(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const pid = (await slotState(this.#sql, this.#o.slot))?.activePid ?? null;
      if (pid === null) return;
      if (Date.now() >= deadline) {
        throw new SlotError(
          `slot ${this.#o.slot} is in use by another process (walsender pid ${pid} on the server): is another ptrackd ` +
            'or pg_receivewal following it? Stop it, or give this one its own --slot and --data-dir',
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** After a failed stream: a slot the server invalidated is dropped, so that #connect creates it again. */
  async inspectSlot(): Promise<void> {
    const slot = await slotState(this.#sql, this.#o.slot);
    if (slot && (slot.restartLsn === null || slot.walStatus === 'lost')) {
      this.#lostWal = `slot ${this.#o.slot} was invalidated (wal_status ${slot.walStatus}): the server removed WAL it held`;
      await dropSlot(this.#sql, this.#o.slot);
    }
  }

  /**
   * The server says the WAL at the map's position is gone (pg_resetwal, a segment removed by hand, a
   * standby that never had it) while the slot still claims it: the slot is dropped so that #connect
   * creates it where WAL is available again, reads what the archive has, and records the rest as a gap
   * naming the segment. False when the slot could not be dropped yet (the next attempt tries again).
   */
  async releaseRemovedWal(segment: string, message: string): Promise<boolean> {
    const slot = this.#o.slot;
    // A slot the server invalidated says why itself (and is dropped by #inspectSlot).
    await this.inspectSlot().catch(() => {});
    if (this.#lostWal) return true;
    if (!this.#o.createSlot) {
      const remedy = `drop slot ${slot} and create it again (SELECT pg_drop_replication_slot('${slot}'); SELECT pg_create_physical_replication_slot('${slot}', true)), or drop --no-create-slot; ptrackd then records a gap from the new slot's position`;
      this.#o.log('error', `${message}: ${remedy}`);
      throw new FollowError(message, remedy);
    }
    this.#o.log(
      'info',
      `the server no longer has WAL segment ${segment}, which the map needs next: slot ${slot} is made again where WAL is available`,
    );
    try {
      await this.awaitSlotFree(10_000);
      await dropSlot(this.#sql, slot);
    } catch (e) {
      this.#o.log('warn', `could not drop slot ${slot} yet: ${(e as Error).message}`);
      return false;
    }
    this.#lostWal = `the server no longer has WAL segment ${segment} (${message}), and slot ${slot} was made again`;
    return true;
  }
}

/** The archive's restore command, run in the server's data directory when it is readable here. */
export function restoreCommand(o: TrackerOptions): RestoreCommand {
  if (o.restoreCommand === undefined) throw new ArchiveError('--init-from needs --restore-command');
  return new RestoreCommand(o.restoreCommand, { timeoutMs: o.restoreTimeoutMs, cwd: o.pgdata });
}
