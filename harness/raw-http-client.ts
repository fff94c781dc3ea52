/**
 * A raw HTTP/1.1 client over node:net, for the conformance suite: bytes and timing are ours to
 * control (drip an upload, stop reading a download), and the end of a transfer is seen exactly
 * (a chunked terminator, a short Content-Length body, a reset).
 */
import net from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  /** Body bytes received (after de-chunking). */
  body: Buffer;
  /** How the transfer ended. */
  ending: "complete" | "truncated" | "reset" | "timeout";
  /** Whether a chunked body ended with its `0\r\n\r\n` terminator. */
  sawChunkedTerminator: boolean;
  /** performance.now() when the status line arrived, and when the transfer ended. */
  statusAt: number;
  endedAt: number;
}

export interface RawExchange {
  socket: net.Socket;
  /** Resolves when the response is over (or the connection ended). */
  response: Promise<RawResponse>;
  /** Resolves when the status line and headers have arrived. */
  headers: Promise<void>;
  /** Bytes of body received so far. */
  readonly received: number;
}

export function connect(port: number, host = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/**
 * Sends the request head (and nothing else) and parses the response as it comes. The caller writes
 * the body with `socket.write` as it likes. `timeoutMs` bounds the whole exchange.
 */
export function exchange(socket: net.Socket, head: string, timeoutMs = 20_000): RawExchange {
  let buffer: Buffer = Buffer.alloc(0);
  let status = 0;
  let headers: Record<string, string> = {};
  let headerDone = false;
  let statusAt = 0;
  const bodyParts: Buffer[] = [];
  let received = 0;
  let chunked = false;
  let contentLength = -1;
  let sawTerminator = false;
  let resolveHeaders!: () => void;
  const headersArrived = new Promise<void>((resolve) => (resolveHeaders = resolve));

  const response = new Promise<RawResponse>((resolve) => {
    let settled = false;
    const finish = (ending: RawResponse["ending"]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolveHeaders();
      resolve({
        status,
        headers,
        body: Buffer.concat(bodyParts),
        ending,
        sawChunkedTerminator: sawTerminator,
        statusAt,
        endedAt: performance.now(),
      });
    };
    const timer = setTimeout(() => {
      finish("timeout");
      socket.destroy();
    }, timeoutMs);

    const parseBody = () => {
      if (chunked) {
        for (;;) {
          const lineEnd = buffer.indexOf("\r\n");
          if (lineEnd < 0) return;
          const size = parseInt(buffer.subarray(0, lineEnd).toString("latin1"), 16);
          if (Number.isNaN(size)) return finish("truncated");
          if (size === 0) {
            if (buffer.length < lineEnd + 4) return;
            sawTerminator = true;
            return finish("complete");
          }
          if (buffer.length < lineEnd + 2 + size + 2) return;
          const part = buffer.subarray(lineEnd + 2, lineEnd + 2 + size);
          bodyParts.push(Buffer.from(part));
          received += size;
          buffer = buffer.subarray(lineEnd + 2 + size + 2);
        }
      } else {
        if (buffer.length > 0) {
          bodyParts.push(Buffer.from(buffer));
          received += buffer.length;
          buffer = Buffer.alloc(0);
        }
        if (contentLength >= 0 && received >= contentLength) finish("complete");
      }
    };

    socket.on("data", (data: Buffer) => {
      buffer = buffer.length ? Buffer.concat([buffer, data]) : data;
      if (!headerDone) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const lines = buffer.subarray(0, end).toString("latin1").split("\r\n");
        status = Number(lines[0]!.split(" ")[1]);
        headers = Object.fromEntries(
          lines.slice(1).map((line) => {
            const colon = line.indexOf(":");
            return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
          }),
        );
        headerDone = true;
        statusAt = performance.now();
        buffer = buffer.subarray(end + 4);
        chunked = (headers["transfer-encoding"] ?? "").includes("chunked");
        contentLength = headers["content-length"] !== undefined ? Number(headers["content-length"]) : -1;
        resolveHeaders();
        if (!chunked && contentLength < 0 && (status === 204 || status === 304)) return finish("complete");
        if (!chunked && contentLength === 0) return finish("complete");
      }
      parseBody();
    });
    socket.on("end", () => finish(headerDone && !chunked && contentLength < 0 ? "complete" : "truncated"));
    socket.on("error", () => finish("reset"));
    socket.on("close", () => finish(headerDone && !chunked && contentLength < 0 ? "complete" : "truncated"));
  });
  socket.write(head);
  return {
    socket,
    response,
    headers: headersArrived,
    get received() {
      return received;
    },
  };
}

export function requestHead(method: string, path: string, headers: Record<string, string | number> = {}): string {
  const lines = [
    `${method} ${path} HTTP/1.1`,
    "Host: 127.0.0.1",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join("\r\n")}\r\n\r\n`;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
