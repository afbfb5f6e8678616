// The server as a child process this test starts, stops and restarts on one
// port (an in-memory restart: the history is lost, the epoch changes).
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { eventually, within } from "./support.js";

export interface ServeSpec {
  /** The command line of `aurigraph-stream serve --port PORT ...`. */
  argv: string[];
  port: number;
  /** Where the server's output goes. */
  log: string;
}

export function serveSpec(): ServeSpec {
  const text = process.env["STREAM_SERVE"];
  if (text === undefined) throw new Error("STREAM_SERVE is not set: run through pytest");
  return JSON.parse(text) as ServeSpec;
}

export class ServerProcess {
  private child: ChildProcess | null = null;

  constructor(readonly spec: ServeSpec) {}

  get http(): string {
    return `http://127.0.0.1:${this.spec.port}`;
  }

  async start(): Promise<void> {
    const [command, ...args] = this.spec.argv;
    if (command === undefined) throw new Error("empty argv");
    const log = openSync(this.spec.log, "a");
    const child = spawn(command, args, { stdio: ["ignore", log, log] });
    this.child = child;
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}: see ${this.spec.log}`);
        try {
          return (await fetch(`${this.http}/api/v11/streams`)).status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      "the server to answer",
    );
  }

  /** SIGTERM (clients get 1001), and wait for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    try {
      await within(exited, 20_000, "the server to exit");
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    } finally {
      this.child = null;
    }
  }

  kill(): void {
    if (this.child !== null && this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}
