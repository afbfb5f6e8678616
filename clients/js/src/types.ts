// What a subscription yields, and the options that shape it.
import type { CloseCodeInfo, FILTER_OPTIONS, StreamName } from "./generated/contract.js";
import type { StreamMessages } from "./generated/messages.js";

export type { StreamMessages };

/** Where a stream is: the last `seq` and the epoch of the history that holds it. */
export interface Position {
  readonly seq: number;
  readonly epoch: string;
}

/** `SEQ:EPOCH`, as the server writes it in a query string. */
export function positionText(position: Position): string {
  return `${position.seq}:${position.epoch}`;
}

/** Read `SEQ:EPOCH`; undefined when it is not one. */
export function parsePosition(text: string): Position | undefined {
  const match = /^(\d{1,16}):([^:]{1,64})$/.exec(text);
  if (match === null || match[1] === undefined || match[2] === undefined) return undefined;
  return { seq: Number(match[1]), epoch: match[2] };
}

type FilterValue = string | number | boolean | readonly (string | number)[];

/** The server-side filter of a stream: its options (docs/protocol.md), as JSON values. */
export type Filter<S extends StreamName> = {
  [K in (typeof FILTER_OPTIONS)[S][number]]?: FilterValue;
};

export interface SubscribeOptions<S extends StreamName> {
  /** The subscription's id on the connection (default: the stream name and a counter). */
  id?: string;
  /** Server-side filter: only matching messages are sent. */
  filter?: Filter<S>;
  /** First the last N messages that pass the filter. Not with `since`. */
  replay?: number;
  /** Resume after this position (a position kept from an earlier run). */
  since?: Position | string;
  /** validators, network: first the current set (a `snapshot` item), then changes. */
  snapshot?: boolean;
}

/** One message of the stream. */
export interface MessageItem<S extends StreamName> {
  readonly type: "message";
  readonly id: string;
  readonly stream: S;
  readonly seq: number;
  readonly epoch: string;
  /** The message; a projection (`fields`, `detail=summary`) has only the fields it keeps. */
  readonly data: StreamMessages[S];
}

/** The current set of a snapshot stream, as of `position`; changes follow. */
export interface SnapshotItem<S extends StreamName> {
  readonly type: "snapshot";
  readonly id: string;
  readonly stream: S;
  readonly position: Position;
  readonly items: readonly StreamMessages[S][];
}

/**
 * Why messages were missed:
 * - `epoch_changed`: the server lost the stream's history (an in-memory server restarted);
 * - `history_lost`: the history no longer reaches back to the last message received;
 * - `sequence`: a `seq` was skipped on a live connection (never expected from the server);
 * - `replay_lost`: the connection dropped after a filtered `replay` was confirmed and before
 *   its first message; delivery goes on after the position the replay ended at.
 */
export type GapReason = "epoch_changed" | "history_lost" | "sequence" | "replay_lost";

/**
 * Messages were missed and cannot be had. Yielded before the next message,
 * never silently: reload what depends on the stream (a snapshot follows
 * when the subscription asked for one).
 */
export interface Gap<S extends StreamName = StreamName> {
  readonly type: "gap";
  readonly id: string;
  readonly stream: S;
  readonly reason: GapReason;
  /** How many messages were missed, when it is known (same epoch, no filter); else null. */
  readonly missed: number | null;
  /** The last position received before the gap. */
  readonly last: Position | null;
  /** Where the stream is now: the next message follows `position.seq`, in `position.epoch`. */
  readonly position: Position;
}

export type Item<S extends StreamName> = MessageItem<S> | SnapshotItem<S> | Gap<S>;

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** What happened to the connection, for a status display or a log. */
export type ClientEvent =
  | { readonly type: "connecting"; readonly attempt: number }
  | { readonly type: "open"; readonly reconnected: boolean }
  | {
      readonly type: "subscribed";
      readonly id: string;
      readonly stream: StreamName;
      readonly position: Position;
      /** false: a gap item was yielded (or, without `since`, the replay fell short). */
      readonly recovered: boolean;
      /** true when this was a resume after a reconnect. */
      readonly resumed: boolean;
      readonly replayed: number;
    }
  | {
      readonly type: "disconnected";
      readonly code: number;
      readonly reason: string;
      /** The server's table entry for the code (undefined for 1005, 1006: a lost connection). */
      readonly info: CloseCodeInfo | undefined;
      /** The HTTP status of a refused upgrade, where the platform shows it (Node). */
      readonly status: number | undefined;
      /** ms until the next attempt. */
      readonly retryIn: number;
      readonly attempt: number;
    }
  | { readonly type: "refreshed"; readonly expiresAt: number | null }
  /**
   * Something the client survived: an unreadable frame (it closes that connection and
   * resumes from the last message delivered), a token callback that failed.
   */
  | { readonly type: "error"; readonly error: Error }
  | { readonly type: "closed"; readonly error: Error | undefined };
