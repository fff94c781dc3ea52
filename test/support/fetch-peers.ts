/** Requests and clients scripted on a virtual clock, for the withDeadlines tests. */
import type { VirtualClock } from "../../src/index.ts";
import { type ScriptedChunk, scriptedConsumer, scriptedSource } from "./scripted-streams.ts";

export interface ScriptedUpload {
  request: Request;
  /** Aborts the request's signal, as a runtime does when the client goes away. */
  disconnect(reason?: unknown): void;
  readonly sourceCancelled: boolean;
}

/** A POST whose body arrives as scripted (chunk i at `at`), with a client signal. */
export function scriptedUpload(
  clock: VirtualClock,
  chunks: ScriptedChunk[],
  init: { url?: string; headers?: HeadersInit; endAt?: number; bytes?: boolean } = {},
): ScriptedUpload {
  const source = scriptedSource(clock, chunks, { endAt: init.endAt ?? chunks.at(-1)?.at ?? 0, bytes: init.bytes });
  const client = new AbortController();
  const request = new Request(init.url ?? "http://localhost/upload", {
    method: "POST",
    body: source.stream,
    headers: init.headers,
    signal: client.signal,
    duplex: "half",
  } as RequestInit);
  return {
    request,
    disconnect: (reason) => client.abort(reason),
    get sourceCancelled() {
      return source.cancelled;
    },
  };
}

/** A bodyless request with a client signal. */
export function clientRequest(url: string, init: RequestInit = {}) {
  const client = new AbortController();
  return {
    request: new Request(url, { ...init, signal: client.signal }),
    disconnect: (reason?: unknown) => client.abort(reason),
  };
}

/** Drip `total` bytes in `size`-byte chunks every `every` ms, starting at `start`. */
export function drip(total: number, size: number, every: number, start = 0): ScriptedChunk[] {
  return Array.from({ length: Math.ceil(total / size) }, (_, i) => ({
    at: start + (i + 1) * every,
    bytes: Math.min(size, total - i * size),
  }));
}

/** A producer that records whether it was cancelled. */
export function trackedProducer(clock: VirtualClock, chunks: ScriptedChunk[], endAt?: number) {
  return scriptedSource(clock, chunks, { endAt: endAt ?? chunks.at(-1)?.at ?? 0 });
}

export { scriptedConsumer };
