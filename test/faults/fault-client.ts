/**
 * One client for the fault tests over HTTP/1.1 (raw TCP, harness/raw-http-client.ts) and
 * HTTP/2 (node:http2, for the h2c row): the same faults, each protocol's way. A reset is a TCP RST
 * on HTTP/1.1 and an RST_STREAM (CANCEL) on HTTP/2; a half-close is a FIN after which the client
 * keeps reading, or an END_STREAM.
 */
import http2 from "node:http2";
import { connect, exchange, requestHead } from "../../harness/raw-http-client.ts";

export type Protocol = "h1" | "h2";

export interface Outcome {
  status: number;
  /** complete: the whole declared body (or a clean end); truncated: ended short; reset: RST (TCP or stream). */
  ending: "complete" | "truncated" | "reset" | "timeout";
  bytes: number;
  /** HTTP/1.1 chunked bodies: whether the `0\r\n\r\n` terminator came. */
  sawChunkedTerminator: boolean;
  /** HTTP/2: the RST_STREAM code the stream closed with (0 for none). */
  rstCode: number;
  statusAt: number;
  endedAt: number;
}

export interface FaultExchange {
  write(bytes: Buffer): void;
  /** TCP RST (HTTP/1.1) or RST_STREAM CANCEL (HTTP/2). */
  reset(): void;
  /** FIN (HTTP/1.1: the client still reads) or END_STREAM (HTTP/2). */
  halfClose(): void;
  /** Stops reading (the server's writes back up), and starts again. */
  pause(): void;
  resume(): void;
  readonly headers: Promise<void>;
  readonly response: Promise<Outcome>;
  readonly received: number;
  /** Frees the client side for good (after the outcome is known). */
  close(): void;
}

export interface FaultClient {
  protocol: Protocol;
  open(
    method: string,
    path: string,
    headers?: Record<string, string | number>,
    timeoutMs?: number,
  ): Promise<FaultExchange>;
  /** A plain GET of a small resource: its status and text. */
  get(path: string, timeoutMs?: number): Promise<{ status: number; text: string }>;
  close(): void;
}

export function faultClient(port: number, protocol: Protocol): FaultClient {
  return protocol === "h1" ? h1Client(port) : h2Client(port);
}

function h1Client(port: number): FaultClient {
  return {
    protocol: "h1",
    async open(method, path, headers = {}, timeoutMs = 20_000) {
      const socket = await connect(port);
      const ex = exchange(socket, requestHead(method, path, headers), timeoutMs);
      const response = ex.response.then(
        (res): Outcome => ({
          status: res.status,
          ending: res.ending,
          bytes: res.body.length,
          sawChunkedTerminator: res.sawChunkedTerminator,
          rstCode: 0,
          statusAt: res.statusAt,
          endedAt: res.endedAt,
        }),
      );
      return {
        write: (bytes) => void socket.write(bytes),
        reset: () => void socket.resetAndDestroy(),
        halfClose: () => void socket.end(),
        pause: () => void socket.pause(),
        resume: () => void socket.resume(),
        headers: ex.headers,
        response,
        get received() {
          return ex.received;
        },
        close: () => void socket.destroy(),
      };
    },
    async get(path, timeoutMs = 10_000) {
      const socket = await connect(port);
      const res = await exchange(socket, requestHead("GET", path, { Connection: "close" }), timeoutMs).response;
      socket.destroy();
      return { status: res.status, text: res.body.toString() };
    },
    close() {},
  };
}

/** One HTTP/2 session per client: streams of the same connection, as a browser would use them. */
function h2Client(port: number): FaultClient {
  let session: http2.ClientHttp2Session | undefined;
  const sessionReady = (): Promise<http2.ClientHttp2Session> => {
    if (session !== undefined && !session.closed && !session.destroyed) return Promise.resolve(session);
    const s = http2.connect(`http://127.0.0.1:${port}`);
    session = s;
    s.on("error", () => {});
    return new Promise((resolve, reject) => {
      s.once("connect", () => {
        s.setLocalWindowSize(64 * 1024 * 1024); // a stalled stream must not starve the others
        resolve(s);
      });
      s.once("error", reject);
    });
  };
  const client: FaultClient = {
    protocol: "h2",
    async get(path, timeoutMs = 10_000) {
      const s = await sessionReady();
      const stream = s.request({ ":path": path });
      stream.on("error", () => {});
      const parts: Buffer[] = [];
      let status = 0;
      stream.once("response", (h) => (status = Number(h[":status"])));
      stream.on("data", (chunk: Buffer) => parts.push(chunk));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          resolve();
        }, timeoutMs);
        stream.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return { status, text: Buffer.concat(parts).toString() };
    },
    async open(method, path, headers = {}, timeoutMs = 20_000) {
      const s = await sessionReady();
      const hasBody = method !== "GET" && method !== "HEAD";
      const lower = Object.fromEntries(
        Object.entries(headers)
          .filter(([k]) => k.toLowerCase() !== "connection")
          .map(([k, v]) => [k.toLowerCase(), String(v)]),
      );
      const stream = s.request({ ":method": method, ":path": path, ...lower }, { endStream: !hasBody });
      stream.on("error", () => {});
      let status = 0;
      let statusAt = 0;
      let received = 0;
      let declared = -1;
      let resolveHeaders!: () => void;
      const headersArrived = new Promise<void>((resolve) => (resolveHeaders = resolve));
      stream.once("response", (h) => {
        status = Number(h[":status"]);
        statusAt = performance.now();
        declared = h["content-length"] !== undefined ? Number(h["content-length"]) : -1;
        resolveHeaders();
      });
      stream.on("data", (chunk: Buffer) => (received += chunk.length));
      const response = new Promise<Outcome>((resolve) => {
        const timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          finish("timeout");
        }, timeoutMs);
        let settled = false;
        const finish = (ending: Outcome["ending"]) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolveHeaders();
          resolve({
            status,
            ending,
            bytes: received,
            sawChunkedTerminator: false,
            rstCode: stream.rstCode ?? 0,
            statusAt,
            endedAt: performance.now(),
          });
        };
        // The response is over at its END_STREAM, even while our side still sends (a server may
        // answer an upload before reading it all): the stream itself closes only when both ends did.
        stream.once("end", () => finish(declared < 0 || received >= declared ? "complete" : "truncated"));
        stream.once("close", () => {
          const rst = stream.rstCode ?? 0;
          finish(rst !== 0 && rst !== http2.constants.NGHTTP2_NO_ERROR ? "reset" : "truncated");
        });
      });
      return {
        write: (bytes) => void stream.write(bytes),
        reset: () => stream.close(http2.constants.NGHTTP2_CANCEL),
        halfClose: () => void stream.end(),
        pause: () => void stream.pause(),
        resume: () => void stream.resume(),
        headers: headersArrived,
        response,
        get received() {
          return received;
        },
        close: () => {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        },
      };
    },
    close() {
      session?.destroy();
      session = undefined;
    },
  };
  return client;
}
