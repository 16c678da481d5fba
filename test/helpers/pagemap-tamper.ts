import { createConnection, createServer, type Server } from 'node:net';
import { freePort } from './pg-cluster.ts';

/**
 * A planted bug for the pg_probackup proof: a relay in front of ptrackd's PostgreSQL port that drops the
 * first changed block from the pagemap of one file in every ptrack_get_pagemapset answer (a DataRow of
 * `path`, `pagemap` whose path is `path`). Everything else passes unchanged.
 */
export async function pagemapTamperer(
  target: number,
  path: string,
): Promise<{ port: number; server: Server; tampered: () => number }> {
  const port = await freePort();
  let tampered = 0;
  const server = createServer((client) => {
    const upstream = createConnection(target, '127.0.0.1');
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('data', (b) => upstream.write(b));
    let startup = true; // the first byte from the server may be an SSL answer, then typed messages
    let held = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      held = Buffer.concat([held, chunk]);
      let at = 0;
      if (startup && held.length > 0 && (held[0] === 0x4e || held[0] === 0x53) && held.length === 1) {
        client.write(held);
        held = Buffer.alloc(0);
        return;
      }
      startup = false;
      while (held.length - at >= 5) {
        const length = held.readInt32BE(at + 1);
        if (held.length - at < 1 + length) break;
        const message = held.subarray(at, at + 1 + length);
        if (message[0] === 0x44 && message.readInt16BE(5) === 2) {
          const pathLength = message.readInt32BE(7);
          if (message.toString('utf8', 11, 11 + pathLength) === path) {
            const hexAt = 11 + pathLength + 4 + 2; // past the pagemap's length and its "\x"
            const hex = message.toString('latin1', hexAt);
            const bytes = Buffer.from(hex, 'hex');
            const i = bytes.findIndex((b) => b !== 0);
            if (i >= 0) {
              bytes[i] &= bytes[i] - 1;
              message.write(bytes.toString('hex'), hexAt, 'latin1');
              tampered++;
            }
          }
        }
        at += 1 + length;
      }
      client.write(held.subarray(0, at));
      held = held.subarray(at);
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, server, tampered: () => tampered };
}
