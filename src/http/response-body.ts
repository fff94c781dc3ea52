/**
 * The handler's response body, once the exchange has an answer with a body to look at: passed on
 * unread, found in memory and passed on as bytes, or handed to the outbound guard. These functions
 * read and build; the exchange decides (its phase, its tracker, the client's signal).
 */
import type { DeadlineTracker } from "../engine/tracker.ts";
import type { BodyReader } from "../guards/common.ts";
import { type OutboundHeartbeat, attachOutboundGuardToReader } from "../guards/outbound.ts";
import type { AdapterHooks } from "./hooks.ts";
import type { InMemoryResponse } from "./options.ts";
import { UNGUARDED_DECLARED_LENGTH, passThroughUntouched } from "./pass-through.ts";
import { type BodyPeek, concatBytes, reopenPeekedBody } from "./peek.ts";

type Head = Parameters<InMemoryResponse>[1];

/** A body opened for the peek: its stream, the reader the peek and the guard use, its status and headers. */
export interface OpenedBody {
  body: ReadableStream<Uint8Array>;
  reader: BodyReader;
  head: Head;
}

/**
 * Whether the handler's response goes out as it is, unread: nothing to bound (see pass-through.ts),
 * or a small body the adapter knows is in memory (as the peek would pass it on, without reading it).
 */
export function goesOutUnread(
  request: Request,
  response: Response,
  own: InMemoryResponse | undefined,
  hooks: AdapterHooks,
): boolean {
  const inMemory = own === undefined ? hooks.inMemoryBodySize?.(response) : undefined;
  return (inMemory !== undefined && inMemory <= UNGUARDED_DECLARED_LENGTH) || passThroughUntouched(request, response);
}

/** Opens the body for the peek (the exchange awaits the peek itself: no promise more per response). */
export function openResponseBody(response: Response, hooks: AdapterHooks): OpenedBody {
  const head = { status: response.status, statusText: response.statusText, headers: response.headers };
  const body = response.body!; // a getter: read once (the peek and the byte-stream probe use this stream)
  return { body, reader: hooks.responseBodyReader?.(body) ?? body.getReader(), head };
}

/**
 * A body the peek read whole: small and already in memory (a string, bytes), it needs no guard, as
 * it fits the socket's buffer. It goes on as a Response of bytes, which every runtime sends on its
 * fast path, instead of a stream and a Response more per request (`own`: the user's
 * `inMemoryResponse`, before the adapter's).
 */
export function inMemoryAnswer(
  chunks: Uint8Array[],
  head: Head,
  own: InMemoryResponse | undefined,
  hooks: AdapterHooks,
): Response {
  const bytes = chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
  return own !== undefined
    ? own(bytes, head)
    : hooks.inMemoryResponse !== undefined
      ? hooks.inMemoryResponse(bytes, head)
      : new Response(bytes as Uint8Array<ArrayBuffer>, head);
}

/** A body that failed during the peek: the status and headers with a failed body, as the client would have had it without the peek. */
export function failedBodyAnswer(error: unknown, head: Head): Response {
  return new Response(new ReadableStream<Uint8Array>({ start: (c) => c.error(error) }), head);
}

/**
 * The Response with the guarded body. A byte stream's guard is one too (asked only now: see
 * reopenPeekedBody), except where the runtime is the body's only reader (responseToRuntime) or an
 * adapter reads it (responseBodyReader: workerd reads a byte stream in 4 KiB BYOB reads).
 */
export function guardedResponse(
  opened: OpenedBody,
  peek: BodyPeek,
  tracker: DeadlineTracker,
  heartbeat: OutboundHeartbeat | undefined,
  hooks: AdapterHooks,
): Response {
  let reader = opened.reader;
  let pending = peek.pending;
  let bytes = false;
  if (hooks.responseToRuntime !== true && hooks.responseBodyReader === undefined)
    ({ reader, pending, bytes } = reopenPeekedBody(
      opened.body,
      reader as ReadableStreamDefaultReader<Uint8Array>,
      pending,
    ));
  return new Response(
    attachOutboundGuardToReader(reader, tracker, peek.chunks, pending, heartbeat, bytes, hooks.quietResponseFailure),
    opened.head,
  );
}
