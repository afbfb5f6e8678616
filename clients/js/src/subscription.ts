// One subscription: its place in the stream, and the items it yields.
//
// The client feeds it the server's frames for its id; it keeps the last seq
// and epoch delivered, drops what it has already delivered (a duplicate can
// only come from a resume that overlaps), and turns `recovered: false` into a
// Gap item before the next message.
//
// A replay (`replay: N`) is the last `replayed` messages up to the subscribed
// position. If the connection drops before the first of them arrives, the resume
// starts just before them: without a filter that drops messages they are the
// last `replayed` seqs, so `since = position - replayed` is exact. With such a
// filter their seqs cannot be known: the resume asks for everything after the
// position (every live message), and the replay is announced as a gap.
import { LATEST_WINS_STREAMS, type StreamName } from "./generated/contract.js";
import { SubscriptionError } from "./errors.js";
import {
  type Gap,
  type Item,
  type Position,
  type StreamMessages,
  type SubscribeOptions,
  parsePosition,
  positionText,
} from "./types.js";

/** Filter options that drop no message (projections), so seqs stay consecutive. */
const PROJECTIONS = new Set(["fields", "detail"]);

export interface SubscribedFrame {
  position: Position;
  recovered: boolean;
  replayed?: number;
}

export class Subscription<S extends StreamName> implements AsyncIterableIterator<Item<S>> {
  readonly id: string;
  readonly stream: S;
  private readonly options: SubscribeOptions<S>;
  /**
   * No filter that drops messages, on a stream the server never conflates: every seq
   * must arrive, so a skipped one is a gap. On a latest-wins stream (metrics, consensus)
   * the server skips replaced states under load, and only `recovered: false` is a gap.
   */
  private readonly consecutive: boolean;
  /** The filter drops messages (an option other than the projections). */
  private readonly filtered: boolean;
  private lastSeq: number | null = null;
  private epoch: string | null = null;
  /** Where to resume when nothing was delivered yet. */
  private floor: number | null = null;
  /** The subscribed position of a filtered replay none of which has arrived yet. */
  private replayAt: Position | null = null;
  private queue: Item<S>[] = [];
  private waiting: ((result: IteratorResult<Item<S>>) => void)[] = [];
  private failWaiting: ((error: Error) => void)[] = [];
  private ended = false;
  private error: Error | undefined;
  private readonly onClose: (sub: { readonly id: string }) => Promise<void>;

  /** @internal The client creates subscriptions: `client.subscribe(stream, options)`. */
  constructor(
    id: string,
    stream: S,
    options: SubscribeOptions<S>,
    onClose: (sub: { readonly id: string }) => Promise<void>,
  ) {
    this.id = id;
    this.stream = stream;
    this.options = options;
    this.onClose = onClose;
    const filterKeys = Object.keys(options.filter ?? {});
    this.filtered = !filterKeys.every((key) => PROJECTIONS.has(key));
    this.consecutive = !LATEST_WINS_STREAMS.includes(stream) && !this.filtered;
    if (options.since !== undefined) {
      const since = typeof options.since === "string" ? parsePosition(options.since) : options.since;
      if (since === undefined) throw new TypeError(`since must be SEQ:EPOCH, not ${String(options.since)}`);
      this.lastSeq = since.seq;
      this.epoch = since.epoch;
    }
    if (options.replay !== undefined && options.since !== undefined) {
      throw new TypeError("replay cannot be combined with since");
    }
  }

  /** The position of the last message delivered (or of the start), to resume from later. */
  get position(): Position | null {
    const seq = this.lastSeq ?? this.floor;
    return seq === null || this.epoch === null ? null : { seq, epoch: this.epoch };
  }

  /** @internal The subscribe command for this subscription on a new connection. */
  command(): Record<string, unknown> {
    const command: Record<string, unknown> = { op: "subscribe", id: this.id, stream: this.stream };
    if (this.options.filter !== undefined) command["filter"] = this.options.filter;
    const position = this.position ?? this.replayAt;
    if (position !== null) {
      command["since"] = positionText(position); // resume: replay and snapshot are done
      if (this.options.snapshot === true) command["snapshot"] = true; // the fallback if it fails
    } else {
      if (this.options.replay !== undefined) command["replay"] = this.options.replay;
      if (this.options.snapshot === true) command["snapshot"] = true;
    }
    return command;
  }

  /** @internal The `subscribed` reply. Returns whether this was a resume. */
  subscribed(frame: SubscribedFrame): boolean {
    const last = this.position;
    const unreplayed = this.replayAt; // this resumes a filtered replay that never began
    this.replayAt = null;
    const from = last ?? unreplayed;
    const { position } = frame;
    if (from !== null && !frame.recovered) {
      const epochChanged = position.epoch !== from.epoch;
      const known = last !== null && !epochChanged && this.consecutive;
      this.push({
        type: "gap",
        id: this.id,
        stream: this.stream,
        reason: epochChanged ? "epoch_changed" : "history_lost",
        missed: known ? Math.max(0, position.seq - from.seq) : null,
        last,
        position,
      } satisfies Gap<S>);
      this.lastSeq = position.seq;
      this.epoch = position.epoch;
    } else if (unreplayed !== null) {
      // Everything after the replay's position follows; the replay itself is lost.
      const resume = { seq: unreplayed.seq, epoch: position.epoch };
      this.push({
        type: "gap",
        id: this.id,
        stream: this.stream,
        reason: "replay_lost",
        missed: null,
        last: null,
        position: resume,
      } satisfies Gap<S>);
      this.lastSeq = resume.seq;
      this.epoch = resume.epoch;
    } else if (last === null) {
      this.epoch = position.epoch;
      const replayed = frame.replayed ?? 0;
      // Replayed messages lie at or below position.seq: without a filter that drops
      // messages, they are the last `replayed` seqs.
      if (replayed > 0 && this.filtered) this.replayAt = position;
      else this.floor = Math.max(0, position.seq - replayed);
    }
    return from !== null;
  }

  /** @internal A `snapshot` frame: the set as of its position; live messages follow it. */
  snapshot(position: Position, items: StreamMessages[S][]): void {
    this.replayAt = null;
    this.epoch = position.epoch;
    this.lastSeq = Math.max(this.lastSeq ?? 0, position.seq);
    this.push({ type: "snapshot", id: this.id, stream: this.stream, position, items });
  }

  /** @internal One message of the stream. */
  message(data: StreamMessages[S]): void {
    const seq = data.seq;
    const epoch = this.epoch ?? "";
    if (this.lastSeq !== null && seq <= this.lastSeq) return; // already delivered
    const expected = (this.lastSeq ?? this.floor ?? seq - 1) + 1;
    if (this.consecutive && seq > expected && (this.lastSeq !== null || this.floor !== null)) {
      const last = this.position;
      this.push({
        type: "gap",
        id: this.id,
        stream: this.stream,
        reason: "sequence",
        missed: seq - expected,
        last,
        position: { seq: seq - 1, epoch },
      });
    }
    this.lastSeq = seq;
    this.replayAt = null;
    this.push({ type: "message", id: this.id, stream: this.stream, seq, epoch, data });
  }

  /** @internal No more items: the end of iteration, or `error` thrown from it. */
  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (error !== undefined) {
      for (const fail of this.failWaiting) fail(error);
    } else {
      for (const resolve of this.waiting) resolve({ value: undefined, done: true });
    }
    this.waiting = [];
    this.failWaiting = [];
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Unsubscribe: no item of this subscription follows. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.end();
    await this.onClose(this);
  }

  next(): Promise<IteratorResult<Item<S>>> {
    const item = this.queue.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) {
      if (this.error !== undefined) {
        const error = this.error;
        this.error = undefined; // thrown once; then the iterator is done
        return Promise.reject(error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiting.push(resolve);
      this.failWaiting.push(reject);
    });
  }

  /** Leaving a `for await` loop unsubscribes. */
  async return(): Promise<IteratorResult<Item<S>>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private push(item: Item<S>): void {
    if (this.ended) return;
    const resolve = this.waiting.shift();
    if (resolve !== undefined) {
      this.failWaiting.shift();
      resolve({ value: item, done: false });
    } else {
      this.queue.push(item);
    }
  }
}

export function subscriptionError(frame: { error?: unknown; detail?: unknown; reason?: unknown }): SubscriptionError {
  const slug = typeof frame.error === "string" ? frame.error : String(frame.reason ?? "error");
  const detail = typeof frame.detail === "string" ? frame.detail : "the server ended the subscription";
  return new SubscriptionError(slug, detail);
}
