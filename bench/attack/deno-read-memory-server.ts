/**
 * The server side of bench/attack/deno-read-memory.ts: `deno run -A bench/attack/deno-read-memory-server.ts
 * MODE PORT`. Each mode reads every POST body in one way and answers its length:
 *   native      request.arrayBuffer() (Deno reads the body in Rust)
 *   default     a default reader on request.body (what any JS stream wrapper does)
 *   pipe        request.body through a TransformStream (the least a WHATWG-stream wrapper does)
 *   byob-4k     a BYOB reader with a 4 KiB buffer; byob-16k, byob-64k alike
 *   guarded     withDenoDeadlines around `native` (request idle 600 s, no minRate: nothing fires)
 */
import { withDenoDeadlines } from "../../adapters/deno.ts";

interface DenoLike {
  args: string[];
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: (request: Request) => Response | Promise<Response>,
  ): unknown;
}
const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
const [mode = "native", port = "0"] = Deno.args;

const answer = (bytes: number) => new Response(String(bytes));
const native = async (request: Request) => answer((await request.arrayBuffer()).byteLength);

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader, size: number) {
  let bytes = 0;
  for (;;) {
    const { done, value } =
      "releaseLock" in reader && size > 0
        ? await (reader as ReadableStreamBYOBReader).read(new Uint8Array(size))
        : await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
    if (done) return answer(bytes);
    bytes += value?.byteLength ?? 0;
  }
}

const byob = (size: number) => (request: Request) => readAll(request.body!.getReader({ mode: "byob" }), size);
const handlers: Record<string, (request: Request) => Promise<Response>> = {
  native,
  default: (request) => readAll(request.body!.getReader(), 0),
  pipe: (request) => readAll(request.body!.pipeThrough(new TransformStream()).getReader(), 0),
  "byob-4k": byob(4096),
  "byob-16k": byob(16384),
  "byob-64k": byob(65536),
  guarded: withDenoDeadlines(native, { request: { idle: 600_000, minRate: null } }) as (
    r: Request,
  ) => Promise<Response>,
};
const handler = handlers[mode];
if (!handler) throw new TypeError(`unknown mode "${mode}" (expected ${Object.keys(handlers).join(", ")})`);
Deno.serve({ port: Number(port), hostname: "127.0.0.1", onListen: () => console.log("listening") }, (request) =>
  handler(request).catch(() => new Response(null, { status: 400 })),
);
