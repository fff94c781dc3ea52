/**
 * The in-memory peek: a small response body already in memory (a string, bytes) needs no guard, as
 * it fits the socket's buffer. It is found by reading what the body holds without waiting for more.
 */
import { TIMERS_BELONG_TO_REQUESTS } from "../engine/clock.ts";
import { type BodyReader, isByteStream, withoutStacks } from "../guards/common.ts";
import type { ReadResult } from "../guards/outbound.ts";
import { UNGUARDED_DECLARED_LENGTH } from "./pass-through.ts";

export interface BodyPeek {
  /** Chunks read (they still have to go out, first). */
  chunks: Uint8Array[];
  /** The whole body was read (and is at most UNGUARDED_DECLARED_LENGTH bytes). */
  done: boolean;
  /** A read that had not resolved yet: the guard's first read ahead. */
  pending: Promise<ReadResult> | undefined;
}

/**
 * Microtask hops the whole peek may take (reads of up to 3 chunks and the end) and still find the
 * body "already there". Measured for a body made from a string or bytes: Node and Deno 3, Bun 2,
 * Deno's Blob bodies 8; a streaming body's first read stays pending, and costs it this many hops.
 */
const PEEK_HOPS = 12;

/**
 * Reads what a body already holds, without waiting for more: an in-memory body (string, bytes)
 * resolves its reads within a few microtasks; a streaming one does not, and its pending read is
 * kept for the guard. Stops past UNGUARDED_DECLARED_LENGTH bytes (a large body is guarded, in memory or not).
 * workerd resolves a read of its native bodies (even one made from a string) only in a later turn
 * of its event loop, never within microtasks: there a zero timer per read bounds the wait (cleared
 * when the read wins; without it no small body on Workers was ever found in memory, and each one
 * paid the whole guard: bench/http/run-cpu-per-request.ts). One object per peek, callbacks made once:
 * no promise race, array or closure per read (the peek runs for every response with a body).
 */
export class Peek {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #reads = 0;
  #hops = 0;
  /** workerd: a read was satisfied since the timer was set. */
  #readSinceTimer = false;
  #finished = false;
  #pending: Promise<ReadResult> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #resolve!: (peek: BodyPeek) => void;
  #reject!: (error: unknown) => void;

  #reader: BodyReader;

  constructor(reader: BodyReader) {
    this.#reader = reader;
  }

  /** Reads what the body holds now: one peek per response with a body. */
  run(): Promise<BodyPeek> {
    return new Promise<BodyPeek>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      this.#next();
      if (!TIMERS_BELONG_TO_REQUESTS) queueMicrotask(this.#tick);
    });
  }

  #next(): void {
    const read = (this.#pending = this.#reader.read());
    read.then(this.#onRead, this.#onError);
    if (TIMERS_BELONG_TO_REQUESTS && this.#timer === undefined) this.#timer = setTimeout(this.#giveUp, 0);
  }

  #finish(done: boolean, pending: Promise<ReadResult> | undefined): void {
    this.#finished = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#resolve({ chunks: this.#chunks, done, pending });
  }

  #onRead = (result: ReadResult): void => {
    if (this.#finished) return; // given up: the guard takes this read as its first
    this.#readSinceTimer = true; // the running timer gives the next read a turn of its own (see #giveUp)
    if (result.done) {
      this.#finish(true, undefined);
      return;
    }
    const chunk: unknown = result.value;
    this.#chunks.push(chunk as Uint8Array);
    if (!(chunk instanceof Uint8Array)) {
      this.#finish(false, undefined); // the guard refuses it
      return;
    }
    this.#size += chunk.byteLength;
    if (++this.#reads >= 3 || this.#size > UNGUARDED_DECLARED_LENGTH) {
      this.#finish(false, undefined);
      return;
    }
    this.#next();
  };

  #onError = (error: unknown): void => {
    if (this.#finished) return; // given up: the guard sees the failure on the pending read
    this.#finished = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#reject(error);
  };

  /**
   * One timer per peek, not one per read (in workerd each timer set and cleared cost more CPU than
   * the rest of the peek): when it fires after a read was satisfied, the read made since gets one
   * more turn; a read that has waited a whole turn of its own is given up.
   */
  #giveUp = (): void => {
    this.#timer = undefined;
    if (this.#finished) return;
    if (!this.#readSinceTimer) this.#finish(false, this.#pending);
    else {
      this.#readSinceTimer = false;
      this.#timer = setTimeout(this.#giveUp, 0);
    }
  };

  #tick = (): void => {
    if (this.#finished) return;
    if (++this.#hops >= PEEK_HOPS) this.#finish(false, this.#pending);
    else queueMicrotask(this.#tick);
  };
}

export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * A body's reader again, after a peek with `reader` (which left `pending` in flight), and whether
 * `body` is a byte stream. Asked only for a body that is to be guarded (the probe costs a thrown
 * TypeError on a default stream; a small body found in memory pays nothing), so the reader is
 * released and taken again: a read still pending fails on the release and is made again on the new
 * reader (what it would have returned stays in the stream's queue), while a read that already
 * settled keeps its result.
 */
export function reopenPeekedBody(
  body: ReadableStream<Uint8Array>,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pending: Promise<ReadResult> | undefined,
): { reader: BodyReader; pending: Promise<ReadResult> | undefined; bytes: boolean } {
  if (!withoutStacks(release, reader)) return { reader, pending, bytes: false };
  const bytes = isByteStream(body);
  const fresh = body.getReader();
  return { reader: fresh, pending: pending?.catch(() => fresh.read()), bytes };
}

/** Releases `reader` (its pending read and `closed` fail with errors of their own); false where a runtime refuses. */
function release(reader: ReadableStreamDefaultReader<Uint8Array>): boolean {
  try {
    reader.releaseLock();
    return true;
  } catch {
    return false; // a runtime that refuses to release with a read pending
  }
}
