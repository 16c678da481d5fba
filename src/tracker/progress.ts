import type { Lsn } from '../wal/index.ts';

/** Catch-up progress: what is reported while the map is behind the server, and how it reads. */

export interface CatchUpProgress {
  readonly behindBytes: number;
  readonly bytesPerSecond: number;
  /** null while the rate is still 0. */
  readonly etaSeconds: number | null;
  /** The most this catch-up was behind: where a progress bar starts. */
  readonly maxBehindBytes: number;
}

/** "catching up: 812.0 MB behind, 95.1 MB/s, ETA 9 s", or "caught up" at the end. */
export function describeProgress(p: CatchUpProgress): string {
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  if (p.behindBytes < 1 << 20) return `caught up: ${mb(p.maxBehindBytes)} MB of WAL applied`;
  const eta = p.etaSeconds === null ? 'unknown' : `${p.etaSeconds} s`;
  return `catching up: ${mb(p.behindBytes)} MB behind, ${mb(p.bytesPerSecond)} MB/s, ETA ${eta}`;
}

/**
 * Every `everyMs` while the map is 1 MB or more behind the server: how far behind, how fast, and when it
 * should be done; one last report when catch-up ends, so a progress bar reaches 100%.
 */
export function reportProgress(
  everyMs: number,
  positions: () => { readonly serverLsn: Lsn; readonly appliedLsn: Lsn },
  report: (p: CatchUpProgress) => void,
): ReturnType<typeof setInterval> {
  let last = { at: Date.now(), applied: positions().appliedLsn };
  let maxBehind = 0;
  return setInterval(() => {
    const now = Date.now();
    const { serverLsn, appliedLsn } = positions();
    const behind = serverLsn - appliedLsn;
    const rate = ((appliedLsn - last.applied) * 1000) / Math.max(1, now - last.at);
    last = { at: now, applied: appliedLsn };
    const caughtUp = behind < 1 << 20;
    if (caughtUp && maxBehind === 0) return;
    maxBehind = Math.max(maxBehind, behind);
    const progress = {
      behindBytes: behind,
      bytesPerSecond: Math.round(rate),
      etaSeconds: rate > 0 ? Math.round(behind / rate) : null,
      maxBehindBytes: maxBehind,
    };
    if (caughtUp) maxBehind = 0;
    report(progress);
  }, everyMs);
}
