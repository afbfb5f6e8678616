// A TCP relay between the client and the server that the tests use to break
// the connection the way networks do: cut it, or stall the server-to-client
// direction (a reader that stops reading, seen from the server).
import { type AddressInfo, type Server, type Socket, createConnection, createServer } from "node:net";

interface Pair {
  client: Socket;
  upstream: Socket;
}

export class Relay {
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private stalled = false;

  private constructor(private readonly targetPort: number) {
    this.server = createServer((client) => this.accept(client));
  }

  static async start(targetPort: number): Promise<Relay> {
    const relay = new Relay(targetPort);
    await new Promise<void>((resolve) => relay.server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get open(): number {
    return this.pairs.size;
  }

  /** Drop every relayed connection at once (the client sees 1006). */
  cut(): void {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Stop reading from the server: its buffers fill, its pings go unanswered. */
  stall(): void {
    this.stalled = true;
    for (const pair of this.pairs) pair.upstream.pause();
  }

  resume(): void {
    this.stalled = false;
    for (const pair of this.pairs) pair.upstream.resume();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const upstream = createConnection({ host: "127.0.0.1", port: this.targetPort });
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => client.write(chunk));
    for (const socket of [client, upstream]) {
      socket.on("error", drop);
      socket.on("close", drop);
    }
    if (this.stalled) upstream.pause();
  }
}
