import { describe, expect, it } from 'vitest';
import { CopyBothReader } from '../../src/replication/copy-both.ts';
import { ReplicationProtocolError } from '../../src/replication/index.ts';

/** A backend message: type, int32 length (itself included), body. */
function message(type: string, body: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  b.set(body, 5);
  return b;
}

function xlogData(walStart: number, walEnd: number, wal: Uint8Array): Buffer {
  const head = Buffer.alloc(25);
  head[0] = 0x77;
  head.writeBigUInt64BE(BigInt(walStart), 1);
  head.writeBigUInt64BE(BigInt(walEnd), 9);
  return message('d', Buffer.concat([head, wal]));
}

function keepalive(walEnd: number, reply: boolean): Buffer {
  const body = Buffer.alloc(18);
  body[0] = 0x6b;
  body.writeBigUInt64BE(BigInt(walEnd), 1);
  body[17] = reply ? 1 : 0;
  return message('d', body);
}

/** What a reader hands on for `stream` cut into `pieces`: WAL by LSN, keepalives, and the other bytes. */
function read(stream: Buffer, cuts: readonly number[]) {
  const wal: { lsn: number; walEnd: number; bytes: Buffer }[] = [];
  const keepalives: [number, boolean][] = [];
  const other: Buffer[] = [];
  const reader = new CopyBothReader({
    onWal: (bytes, lsn, walEnd) => wal.push({ lsn, walEnd, bytes: Buffer.from(bytes) }),
    onKeepalive: (walEnd, reply) => keepalives.push([walEnd, reply]),
    onOther: (bytes) => other.push(Buffer.from(bytes)),
  });
  let at = 0;
  for (const cut of [...cuts, stream.length]) {
    reader.push(stream.subarray(at, cut));
    at = cut;
  }
  return { wal, keepalives, other: Buffer.concat(other) };
}

describe('CopyBothReader: a CopyBoth stream read off the socket', () => {
  const walA = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff));
  const walB = Buffer.from(Array.from({ length: 100 }, (_, i) => (i * 13) & 0xff));
  const before = message('W', Buffer.from([0, 0, 0])); // CopyBothResponse, text format, no columns
  const notice = message('N', Buffer.from('SNOTICE\0Mhello\0\0', 'latin1'));
  const after = Buffer.concat([
    message('c', Buffer.alloc(0)),
    message('C', Buffer.from('START_STREAMING\0')),
  ]);
  const stream = Buffer.concat([
    before,
    xlogData(0x1_0000_2000, 0x1_0000_3000, walA),
    keepalive(0x1_0000_3000, true),
    notice,
    xlogData(0x1_0000_2000 + walA.length, 0x1_0000_4000, walB),
    keepalive(0x1_0000_4000, false),
    after,
  ]);
  const expected = {
    wal: Buffer.concat([walA, walB]),
    keepalives: [
      [0x1_0000_3000, true],
      [0x1_0000_4000, false],
    ],
    other: Buffer.concat([before, notice, after]),
  };

  /** Checks a reading against the stream: WAL contiguous from its first LSN, each piece with its message's walEnd. */
  function check(r: ReturnType<typeof read>): void {
    let lsn = 0x1_0000_2000;
    for (const piece of r.wal) {
      expect(piece.lsn).toBe(lsn);
      expect(piece.walEnd).toBe(lsn < 0x1_0000_2000 + walA.length ? 0x1_0000_3000 : 0x1_0000_4000);
      lsn += piece.bytes.length;
    }
    expect(Buffer.concat(r.wal.map((p) => p.bytes)).equals(expected.wal)).toBe(true);
    expect(r.keepalives).toEqual(expected.keepalives);
    expect(r.other.equals(expected.other)).toBe(true);
  }

  it('reads the stream whole, and cut at every single byte', () => {
    check(read(stream, []));
    for (let cut = 1; cut < stream.length; cut++) check(read(stream, [cut]));
  });

  it('reads it cut into pieces of every size from 1 to 64 bytes', () => {
    for (let size = 1; size <= 64; size++) {
      const cuts = Array.from({ length: Math.ceil(stream.length / size) - 1 }, (_, i) => (i + 1) * size);
      check(read(stream, cuts));
    }
  });

  it('refuses a message it cannot frame, naming what is wrong', () => {
    const bad = (body: Buffer) => () => read(message('d', body), []);
    expect(bad(Buffer.from([0x71, 1, 2]))).toThrow(/unexpected replication message type 0x71/);
    expect(bad(Buffer.alloc(10, 0x77))).toThrow(/XLogData message of 10 bytes/);
    expect(bad(Buffer.concat([keepalive(1, false).subarray(5), Buffer.from([0])]))).toThrow(
      /keepalive message of 19 bytes/,
    );
    expect(bad(Buffer.alloc(0))).toThrow(ReplicationProtocolError);
  });
});
