import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { SSL_REQUEST } from './messages.ts';

/** Where the server is: TCP host and port (or a Unix socket directory as host), and TLS as libpq's sslmode gives it. */
export interface Upstream {
  readonly host: string;
  readonly port: number;
  readonly ssl?: ConnectionOptions | false;
}

/** A connection to the server, with TLS first when the daemon's own connection uses it. */
export async function connectUpstream(u: Upstream): Promise<Socket> {
  const socket = socketTo(u);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (e) =>
      reject(new Error(`cannot reach the server at ${u.host}:${u.port}: ${e.message}`)),
    );
  });
  if (!u.ssl) return socket;
  const request = Buffer.alloc(8);
  request.writeInt32BE(8, 0);
  request.writeInt32BE(SSL_REQUEST, 4);
  socket.write(request);
  const answer = await new Promise<string>((resolve, reject) => {
    socket.once('data', (b: Buffer) => resolve(String.fromCharCode(b[0])));
    socket.once('error', reject);
  });
  if (answer !== 'S')
    throw new Error('the server refuses TLS, which the daemon’s connection settings require');
  const secure = tlsConnect({ socket, servername: u.host, ...u.ssl });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  return secure;
}

/** A plain connection to the server's address: TCP, or its Unix socket when the host is a directory. */
export function socketTo(u: Upstream): Socket {
  const socket = u.host.startsWith('/')
    ? netConnect(`${u.host}/.s.PGSQL.${u.port}`)
    : netConnect(u.port, u.host);
  socket.setNoDelay(true);
  return socket;
}
