/**
 * Responses with immutable headers, from a real fetch() over loopback (the sockets half of
 * test/bad-input.test.ts): returned by a handler, proxied through fetchWithDeadlines, or late.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createVirtualClock, fetchWithDeadlines, withDeadlines } from "../src/index.ts";

describe("Responses with immutable headers", () => {
  let server: http.Server;
  let origin: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === "/big") {
        res.writeHead(200, { "content-type": "application/x-big" });
        for (let i = 0; i < 8; i++) res.write(Buffer.alloc(64 * 1024, i));
        res.end();
      } else if (req.url === "/declared")
        res.writeHead(200, { "content-type": "text/plain", "content-length": "5" }).end("hello");
      else res.writeHead(200, { "content-type": "text/plain" }).end("small");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("a fetch() Response (immutable headers) returned by the handler: guarded, in memory, or passed through; never a crash", async () => {
    for (const [path, bytes] of [
      ["/big", 8 * 64 * 1024],
      ["/small", 5],
      ["/declared", 5],
    ] as const) {
      let original: Response | undefined;
      const wrapped = withDeadlines(async () => (original = await fetch(origin + path)), { onTimeout: false });
      const response = (await wrapped(new Request("http://x/"))) as Response;
      expect(() => original!.headers.set("x-b", "1")).toThrow(TypeError); // immutable indeed
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe(original!.headers.get("content-type"));
      expect((await response.arrayBuffer()).byteLength).toBe(bytes);
      if (path === "/declared") expect(response).toBe(original); // small declared length: untouched
    }
  });

  it("Response.error(), Response.redirect() and a fetch() Response through fetchWithDeadlines pass; a late one is cancelled", async () => {
    for (const make of [() => Response.error(), () => Response.redirect("http://a/", 302)]) {
      const response = make();
      expect(await withDeadlines(() => response, { onTimeout: false })(new Request("http://x/"))).toBe(response);
    }
    const proxied = withDeadlines(() => fetchWithDeadlines(`${origin}/big`, { deadlines: { idle: 5000 } }), {
      onTimeout: false,
    });
    expect((await ((await proxied(new Request("http://x/"))) as Response).arrayBuffer()).byteLength).toBe(
      8 * 64 * 1024,
    );
    // The handler deadline answers 503 first; the real fetch() Response returned later has its body cancelled.
    const clock = createVirtualClock();
    let late: Response | undefined;
    const slow = withDeadlines(
      async () => {
        await clock.sleep(2000);
        late = await fetch(`${origin}/big`);
        return late;
      },
      { clock, onTimeout: false, handler: 1000 },
    );
    const pending = slow(new Request("http://x/"));
    await clock.advance(1000);
    expect(((await pending) as Response).status).toBe(503);
    await clock.advance(1000);
    await vi.waitFor(() => expect(late?.bodyUsed).toBe(true), { timeout: 5000 }); // cancelled, no crash
  });
});
