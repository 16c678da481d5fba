import pino from 'pino';
import { prettyFactory } from 'pino-pretty';
import { type CatchUpProgress, describeProgress } from '../tracker/index.ts';

export interface DaemonOutput {
  readonly log: pino.Logger;
  readonly tty: boolean;
  /** Catch-up progress: a log line, or on a terminal a progress bar redrawn in place. */
  readonly progress: (p: CatchUpProgress) => void;
}

/**
 * JSON lines on stdout (what Kubernetes collects); on a terminal, readable lines instead, and the
 * progress bar kept on the last line, under them.
 */
export function daemonOutput(out: NodeJS.WriteStream = process.stdout): DaemonOutput {
  if (!out.isTTY) {
    const log = pino({ name: 'ptrackd' });
    return { log, tty: false, progress: (p) => log.info(p, describeProgress(p)) };
  }
  const pretty = prettyFactory({ colorize: true, ignore: 'pid,hostname,name' });
  let bar = '';
  const write = (text: string) => out.write(bar ? `\r\x1b[K${text}${bar}` : text);
  const log = pino({ name: 'ptrackd' }, { write: (line: string) => write(pretty(line)) });
  return {
    log,
    tty: true,
    progress: (p) => {
      const line = progressBar(p, out.columns ?? 80);
      const caughtUp = p.behindBytes < 1 << 20;
      bar = caughtUp ? '' : line;
      out.write(`\r\x1b[K${line}${caughtUp ? '\n' : ''}`);
    },
  };
}

/** `[#######.............] 35% catching up: 812.0 MB behind, 95.1 MB/s, ETA 9 s`, fitted to `width`. */
export function progressBar(p: CatchUpProgress, width: number): string {
  const done = p.behindBytes < 1 << 20 ? 1 : 1 - p.behindBytes / p.maxBehindBytes;
  const cells = 20;
  const filled = Math.round(done * cells);
  const text = `[${'#'.repeat(filled)}${'.'.repeat(cells - filled)}] ${Math.round(done * 100)}% ${describeProgress(p)}`;
  return text.slice(0, Math.max(0, width - 1));
}
