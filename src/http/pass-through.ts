/**
 * Which responses go out as the handler made them: nothing to bound (no body, a small declared
 * length), or not HTTP any more (an upgrade, a WebSocket), or a body somebody else reads.
 */

/**
 * A response that declares a Content-Length up to this size goes out unwrapped: it fits the
 * socket's send buffer (and an HTTP/2 stream's initial window), so no outbound idle or rate clock
 * could ever run on it, while wrapping would cost a stream and a Response per request.
 */
export const UNGUARDED_DECLARED_LENGTH = 64 * 1024;

/** A declared Content-Length as a number, or undefined: digits only, as RFC 9110 writes it ("1e3" or "12, 12" is none). */
export function declaredContentLength(response: Response): number | undefined {
  const declared = response.headers.get("content-length");
  if (declared === null || declared.length > 15 || !/^\d+$/.test(declared)) return undefined;
  return Number(declared);
}

/** Bodies that reach the runtime as they are: nothing to bound, or not HTTP any more. */
export function passThroughUntouched(request: Request, response: Response): boolean {
  const body = response.body;
  const length = body === null ? undefined : declaredContentLength(response);
  return (
    body === null ||
    (length !== undefined && length <= UNGUARDED_DECLARED_LENGTH) ||
    request.method === "HEAD" ||
    response.status === 101 ||
    response.status === 204 ||
    response.status === 304 ||
    response.type === "error" ||
    (response as { webSocket?: unknown }).webSocket != null ||
    response.bodyUsed ||
    body.locked
  );
}

/** Whether a response is a server-sent event stream (its media type, parameters aside). */
export function isEventStream(headers: Headers): boolean {
  const type = headers.get("content-type");
  return type !== null && /^\s*text\/event-stream\s*(;|$)/i.test(type);
}

/** Structural, so a Response from another realm (or a framework's lightweight class) counts. */
export function isResponse(value: unknown): value is Response {
  return (
    value instanceof Response ||
    (typeof value === "object" &&
      value !== null &&
      typeof (value as Response).status === "number" &&
      "body" in value &&
      typeof (value as Response).headers?.get === "function")
  );
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value instanceof Promise ||
    (typeof value === "object" && value !== null && typeof (value as PromiseLike<unknown>).then === "function")
  );
}

export function ignore(): void {}

/** A handler's Response that came too late (a deadline answered first): its body is freed. */
export function cancelLateBody(response: unknown, reason: unknown): void {
  if (isResponse(response) && response.body !== null && !response.body.locked)
    response.body.cancel(reason).catch(ignore);
}

/** A handler's value (or its promise) that comes too late: a Response's body is freed once it is there. */
export function cancelLateAnswer(pending: unknown, reason: unknown): void {
  if (isThenable(pending)) Promise.resolve(pending).then((value) => cancelLateBody(value, reason), ignore);
  else cancelLateBody(pending, reason);
}
