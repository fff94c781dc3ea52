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
import { type BodyPeek, Peek, concatBytes, reopenPeekedBody } from "./peek.ts";

type Head = Parameters<InMemoryResponse>[1];

/** A body still streaming after the peek: what the outbound guard takes over. */
export interface StreamingBody {
  body: ReadableStream<Uint8Array>;
  reader: BodyReader;
  peek: BodyPeek;
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

/**
 * Reads what the body already holds. A body already in memory (a string, bytes) and small needs no
 * guard: it fits the socket's buffer, so it comes back as a Response of bytes, which every runtime
 * sends on its fast path, instead of a stream and a Response more per request (`own`: the user's
 * `inMemoryResponse`, before the adapter's). A body that fails at once comes back as a Response
 * with that failure, as the client would have had it without the peek. Any other body comes back
 * as a StreamingBody, for the guard.
 */
export async function peekResponseBody(
  response: Response,
  own: InMemoryResponse | undefined,
  hooks: AdapterHooks,
): Promise<Response | StreamingBody> {
  const head = { status: response.status, statusText: response.statusText, headers: response.headers };
  const body = response.body!; // a getter: read once (the peek and the byte-stream probe use this stream)
  const reader = hooks.responseBodyReader?.(body) ?? body.getReader();
  let peek: BodyPeek;
  try {
    peek = await new Peek(reader).run();
  } catch (error) {
    return new Response(new ReadableStream<Uint8Array>({ start: (c) => c.error(error) }), head);
  }
  if (!peek.done) return { body, reader, peek, head };
  const bytes = peek.chunks.length === 1 ? peek.chunks[0]! : concatBytes(peek.chunks);
  return own !== undefined
    ? own(bytes, head)
    : hooks.inMemoryResponse !== undefined
      ? hooks.inMemoryResponse(bytes, head)
      : new Response(bytes as Uint8Array<ArrayBuffer>, head);
}

/**
 * The Response with the guarded body. A byte stream's guard is one too (asked only now: see
 * reopenPeekedBody), except where the runtime is the body's only reader (responseToRuntime) or an
 * adapter reads it (responseBodyReader: workerd reads a byte stream in 4 KiB BYOB reads).
 */
export function guardedResponse(
  streaming: StreamingBody,
  tracker: DeadlineTracker,
  heartbeat: OutboundHeartbeat | undefined,
  hooks: AdapterHooks,
): Response {
  let { reader, peek } = streaming;
  let pending = peek.pending;
  let bytes = false;
  if (hooks.responseToRuntime !== true && hooks.responseBodyReader === undefined)
    ({ reader, pending, bytes } = reopenPeekedBody(
      streaming.body,
      reader as ReadableStreamDefaultReader<Uint8Array>,
      pending,
    ));
  return new Response(
    attachOutboundGuardToReader(reader, tracker, peek.chunks, pending, heartbeat, bytes, hooks.quietResponseFailure),
    streaming.head,
  );
}
