/**
 * Bun's idle timer around one exchange, as stream-deadlines/bun manages it and as the Hono middleware
 * does on Bun when it owns the request (Hono hands it Bun's server as `c.env`): off while the
 * library's limits govern (`server.timeout(request, 0)`: upload bytes do not reset Bun's timer, and
 * it kills a quiet response), back on (`idleTimeout`) before the exchange ends, and at 1 s when a
 * response deadline fires (Bun keeps a connection until what it queued has drained otherwise).
 * Only structural types: no import of Bun's.
 */
import { fieldError, typeOf } from "../src/http/adapter-contract.ts";

/** The part of Bun's `Server` that sets a connection's idle timer (seconds; 0 turns it off). */
export interface BunTimeoutServer {
  timeout(request: Request, seconds: number): void;
}

/** Bun's own default `idleTimeout`, in seconds. */
export const BUN_DEFAULT_IDLE_TIMEOUT = 10;
/** The largest `idleTimeout` Bun.serve accepts, in seconds. */
const BUN_MAX_IDLE_TIMEOUT = 255;

export function checkIdleTimeout(value: unknown, where: string): number {
  if (value === undefined) return BUN_DEFAULT_IDLE_TIMEOUT;
  if (typeof value !== "number") throw fieldError(where, "idleTimeout", "a number of seconds", typeOf(value));
  if (!Number.isInteger(value) || value < 0 || value > BUN_MAX_IDLE_TIMEOUT) {
    const expected = `a whole number of seconds from 0 to ${BUN_MAX_IDLE_TIMEOUT} (as given to Bun.serve)`;
    throw fieldError(where, "idleTimeout", expected, value, RangeError);
  }
  return value;
}

/**
 * Bun's server when `env` is one (what Hono's `c.env` is on Bun: `app.fetch(request, server)`):
 * something with Bun's `timeout`, `requestIP` and `upgrade` methods. Undefined anywhere else (Workers
 * bindings, @hono/node-server's `{ incoming, outgoing }`, Deno's serve info).
 */
export function bunServerOf(env: unknown): BunTimeoutServer | undefined {
  if (typeof env !== "object" || env === null) return undefined;
  const candidate = env as Record<string, unknown>;
  return typeof candidate.timeout === "function" &&
    typeof candidate.requestIP === "function" &&
    typeof candidate.upgrade === "function"
    ? (env as BunTimeoutServer)
    : undefined;
}

/** The server as the handler sees it: the request-keyed methods also accept the library's copy of the Request. */
export function serverFor<Server extends object>(server: Server, handlerRequest: Request, original: Request): Server {
  const map = (request: unknown) => (request === handlerRequest ? original : request);
  return new Proxy(server, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      // Bun's methods check their receiver: call them on the real server.
      if (key === "requestIP" || key === "timeout" || key === "upgrade") {
        return (request: unknown, ...rest: unknown[]) =>
          (value as (...args: unknown[]) => unknown).call(target, map(request), ...rest);
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

/**
 * A response body that turns Bun's idle timer back on just before it ends (a call after the last
 * byte went out would do nothing). Pull-based with no buffer, so the guard underneath still sees
 * each chunk taken exactly when Bun takes it.
 */
export function restoringBody(body: ReadableStream<Uint8Array>, restore: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read(); // a timeout error rejects here: Bun closes the connection
        if (done) {
          restore();
          controller.close();
        } else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The exchange's Response, with Bun's idle timer handled: for a body the library guards, the timer
 * comes back on just before that body ends, and at 1 s when the signal `responseSignal()` gives
 * aborts (a response deadline fired); for anything else (no body, passed through, found in memory,
 * a timeout answer), it is Bun's again now.
 */
export function bunIdleAfterAnswer(
  server: BunTimeoutServer,
  request: Request,
  idleTimeout: number,
  response: Response,
  guardedBody: boolean,
  responseSignal: () => AbortSignal | undefined,
): Response {
  const restore = () => server.timeout(request, idleTimeout);
  const body = guardedBody ? response.body : null;
  if (body === null) {
    restore();
    return response;
  }
  // Asked only now: the response controls of an exchange whose body is not guarded are not to be woken.
  responseSignal()?.addEventListener("abort", () => server.timeout(request, 1), { once: true });
  return new Response(restoringBody(body, restore), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
