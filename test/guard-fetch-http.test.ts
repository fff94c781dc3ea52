/**
 * fetchWithDeadlines over a real socket (the sockets half of test/guard-fetch.test.ts): node:http on
 * 127.0.0.1, real time, limits of hundreds of ms with wide margins.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { fetchWithDeadlines } from "../src/index.ts";

describe("fetchWithDeadlines over a real socket (node:http on 127.0.0.1, real time)", () => {
  it("a streamed upload under idle 300 ms, a whole body redirected, a slow origin under minRate, a Request aborted at 100 ms", async () => {
    const closedEarly: string[] = [];
    const server = createServer((req, res) => {
      let bytes = 0;
      req.on("data", (chunk: Buffer) => void (bytes += chunk.length));
      res.on("close", () => {
        if (!res.writableFinished) closedEarly.push(req.url ?? "");
      });
      if (req.url === "/upload") req.on("end", () => res.end(JSON.stringify({ bytes })));
      if (req.url === "/moved") req.on("end", () => res.writeHead(307, { location: "/upload" }).end());
      if (req.url === "/slow") setTimeout(() => res.end("x".repeat(64 * 1024)), 800);
      // "/never": no answer at all.
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // 9 chunks 100 ms apart, under idle 300 ms: took ~950 ms with plain fetch(), was cut at ~310 ms.
      let sent = 0;
      const upload = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            if (sent === 9) return controller.close();
            await new Promise((resolve) => setTimeout(resolve, 100));
            sent++;
            controller.enqueue(new Uint8Array(1000));
          },
        },
        { highWaterMark: 0 },
      );
      let started = performance.now();
      const uploaded = await fetchWithDeadlines(`${origin}/upload`, {
        method: "POST",
        body: upload,
        duplex: "half",
        deadlines: { idle: 300 },
      } as RequestInit);
      expect(await uploaded.json()).toEqual({ bytes: 9000 });
      expect(performance.now() - started).toBeGreaterThanOrEqual(850);

      // A body given whole keeps what fetch() does with it (a known length, redirects followed); a
      // Request's body is a stream whatever it was made from, and fetch() follows no 307 with a stream.
      const whole = await fetchWithDeadlines(`${origin}/moved`, {
        method: "POST",
        body: "hello",
        deadlines: { idle: 300 },
      });
      expect(await whole.json()).toEqual({ bytes: 5 });
      const fromString = new Request(`${origin}/moved`, { method: "POST", body: "hello" });
      await expect(fetchWithDeadlines(fromString, { deadlines: { idle: 300 } })).rejects.toThrow(TypeError);

      // Headers after 800 ms under { idle: 1500, minRate: 4096, grace: 300 }: was cut at ~350 ms, "0 B/s".
      started = performance.now();
      const slow = await fetchWithDeadlines(`${origin}/slow`, { deadlines: { idle: 1500, minRate: 4096, grace: 300 } });
      expect((await slow.text()).length).toBe(64 * 1024);
      expect(performance.now() - started).toBeGreaterThanOrEqual(750);

      // A Request whose own signal aborts at 100 ms: rejects then with the AbortError (ran on to idle, 1.5 s).
      const client = new AbortController();
      const request = new Request(`${origin}/never`, { signal: client.signal });
      setTimeout(() => client.abort(), 100);
      started = performance.now();
      const error = await fetchWithDeadlines(request, { deadlines: { idle: 1500 } }).catch((e: unknown) => e);
      const elapsed = performance.now() - started;
      expect((error as DOMException).name).toBe("AbortError");
      expect(error).toBe(request.signal.reason);
      expect(elapsed).toBeGreaterThanOrEqual(90);
      expect(elapsed).toBeLessThan(600);
      // The upstream call was aborted: the origin sees its connection go.
      for (let i = 0; i < 50 && !closedEarly.includes("/never"); i++) await new Promise((r) => setTimeout(r, 20));
      expect(closedEarly).toEqual(["/never"]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
