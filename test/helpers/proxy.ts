import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './pg-cluster.ts';

/**
 * A TCP forwarder to 127.0.0.1:target whose port can be "blocked" like a firewall that drops packets:
 * open connections fall silent (nothing is forwarded, nothing is reset) and new ones are accepted but
 * never answered. Unblocking drops what was cut off, as timeouts on both sides would, and forwards anew.
 */
export class BlockableProxy {
  readonly port: number;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #blocked = false;

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  static async start(target: number): Promise<BlockableProxy> {
    const port = await freePort();
    const server = createServer();
    const proxy = new BlockableProxy(server, port);
    server.on('connection', (client) => proxy.#accept(client, target));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    return proxy;
  }

  block(): void {
    this.#blocked = true;
    for (const s of this.#sockets) s.pause();
  }

  unblock(): void {
    this.#blocked = false;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }

  async close(): Promise<void> {
    this.unblock();
    await new Promise((r) => this.#server.close(r));
  }

  #accept(client: Socket, target: number): void {
    this.#sockets.add(client);
    client.on('close', () => this.#sockets.delete(client));
    client.on('error', () => {});
    if (this.#blocked) {
      client.pause();
      return;
    }
    const server = createConnection(target, '127.0.0.1');
    this.#sockets.add(server);
    server.on('close', () => this.#sockets.delete(server));
    server.on('error', () => client.destroy());
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (b) => {
        if (!this.#blocked) to.write(b);
      });
      from.on('end', () => to.end());
    };
    forward(client, server);
    forward(server, client);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  }
}
