/**
 * How the Workers adapter reads native bodies, and how the system clock behaves where there is no
 * setImmediate (workerd): both decide what a guarded body costs there (docs/performance.md). Run in
 * Node with workerd's two stream classes stood in for, before the adapter is imported, so that the
 * adapter takes its workerd path; the BYOB reads it makes are seen at the source.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A byte stream whose source records each BYOB read's buffer size and fills `fill(size)` of it. */
function recordingByteStream(
  chunks: number,
  fill: (size: number, index: number) => number,
): { stream: ReadableStream<Uint8Array>; sizes: number[] } {
  const sizes: number[] = [];
  const stream = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest;
      if (request === null || request.view === null) throw new Error("expected a BYOB read");
      if (sizes.length === chunks) {
        controller.close();
        request.respond(0);
        return;
      }
      const size = request.view.byteLength;
      sizes.push(size);
      request.respond(Math.max(1, Math.min(size, fill(size, sizes.length - 1))));
    },
  });
  return { stream: stream as ReadableStream<Uint8Array>, sizes };
}

describe("Workers adapter: BYOB reads of native bodies", () => {
  const saved: Record<string, unknown> = {};
  let withWorkersDeadlines: typeof import("../adapters/workers.ts").withWorkersDeadlines;

  beforeAll(async () => {
    // What the adapter looks for to know it runs in workerd (stand-ins: plain identity transforms).
    for (const name of ["FixedLengthStream", "IdentityTransformStream"]) {
      saved[name] = (globalThis as Record<string, unknown>)[name];
      (globalThis as Record<string, unknown>)[name] = class extends TransformStream<Uint8Array, Uint8Array> {};
    }
    vi.resetModules();
    ({ withWorkersDeadlines } = await import("../adapters/workers.ts"));
  });
  afterAll(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete (globalThis as Record<string, unknown>)[name];
      else (globalThis as Record<string, unknown>)[name] = value;
    }
  });

  async function readThrough(stream: ReadableStream<Uint8Array>): Promise<number> {
    const ctx = { waitUntil: (_promise: Promise<unknown>) => {} };
    const fetch = withWorkersDeadlines(() => new Response(stream), { onTimeout: false });
    const response = await fetch(new Request("http://localhost/"), {}, ctx);
    let bytes = 0;
    const reader = response.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return bytes;
      bytes += value.byteLength;
    }
  }

  it("grows 4 KiB → 16 KiB → 64 KiB → 256 KiB → 1 MiB while the body fills every read, and stays at 1 MiB", async () => {
    const { stream, sizes } = recordingByteStream(8, (size) => size);
    const bytes = await readThrough(stream);
    expect(sizes).toEqual([4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, MiB, MiB, MiB]);
    expect(bytes).toBe(sizes.reduce((a, b) => a + b, 0));
  });

  it("shrinks by four after a read that filled less than a quarter, never below 4 KiB; holds between", async () => {
    // Fills: full ×5 (up to 1 MiB), then 100 KiB (< 1/4 of 1 MiB: shrink to 256 KiB), then 100 KiB
    // (over 1/4 of 256 KiB: hold), then 1 KiB three times (shrink to 64, 16, 4 KiB), then 1 KiB (hold at 4 KiB).
    const fills = [Infinity, Infinity, Infinity, Infinity, Infinity, 100 * KiB, 100 * KiB, KiB, KiB, KiB, KiB];
    const { stream, sizes } = recordingByteStream(fills.length, (size, i) => Math.min(size, fills[i]!));
    await readThrough(stream);
    expect(sizes).toEqual([
      4 * KiB,
      16 * KiB,
      64 * KiB,
      256 * KiB,
      MiB,
      MiB,
      256 * KiB,
      256 * KiB,
      64 * KiB,
      16 * KiB,
      4 * KiB,
    ]);
  });
});

/**
 * Runs `body` with the adapter loaded as in workerd: the globals it looks for (stand-ins: plain
 * identity transforms) set, and removed again after.
 */
async function withWorkerdStandIns(
  body: (adapter: typeof import("../adapters/workers.ts").withWorkersDeadlines) => Promise<void>,
): Promise<void> {
  for (const name of ["FixedLengthStream", "IdentityTransformStream"])
    (globalThis as Record<string, unknown>)[name] = class extends TransformStream<Uint8Array, Uint8Array> {};
  vi.resetModules();
  try {
    await body((await import("../adapters/workers.ts")).withWorkersDeadlines);
  } finally {
    for (const name of ["FixedLengthStream", "IdentityTransformStream"])
      delete (globalThis as Record<string, unknown>)[name];
    vi.resetModules();
  }
}

describe("Workers adapter: uploads stay byte streams", () => {
  it("the handler's guarded upload takes a BYOB reader, as workerd's native upload does", async () => {
    await withWorkerdStandIns(async (withWorkersDeadlines) => {
      const ctx = { waitUntil: (_promise: Promise<unknown>) => {} };
      const fetch = withWorkersDeadlines(
        async (request: Request) => {
          const reader = request.body!.getReader({ mode: "byob" });
          let bytes = 0;
          for (;;) {
            const { done, value } = await reader.read(new Uint8Array(1000));
            if (done) return new Response(String(bytes));
            bytes += value.byteLength;
          }
        },
        { onTimeout: false },
      );
      const upload = new Request("http://localhost/", { method: "POST", body: new Uint8Array(10_000) });
      const response = await fetch(upload, {}, ctx);
      expect(await response.text()).toBe("10000");
    });
  });
});

describe("Workers adapter: an upload the handler never read", () => {
  it("is cancelled once the handler has returned (wrangler dev's body-draining middleware then leaves it alone); a later read fails and says why", async () => {
    await withWorkerdStandIns(async (withWorkersDeadlines) => {
      const ctx = { waitUntil: (_promise: Promise<unknown>) => {} };
      let kept: Request | undefined;
      const fetch = withWorkersDeadlines(
        (request: Request) => {
          kept = request; // read later, after the Response went out
          return new Response("not found", { status: 404 });
        },
        { onTimeout: false },
      );
      let cancelled = false;
      const body = new ReadableStream<Uint8Array>({
        type: "bytes",
        pull() {}, // the client sends nothing more
        cancel() {
          cancelled = true;
        },
      });
      const upload = new Request("http://localhost/", { method: "POST", body, duplex: "half" } as RequestInit);
      const response = await fetch(upload, {}, ctx);
      expect(response.status).toBe(404);
      // What wrangler's middleware checks before draining: the body was used (cancelled), not left locked.
      await Promise.resolve();
      expect(cancelled).toBe(true);
      expect(upload.bodyUsed).toBe(true);
      await expect(kept!.text()).rejects.toThrow(
        /stream-deadlines\/workers: the upload was released: the handler returned without reading it/,
      );
    });
  });
});

describe("systemClock without setImmediate (workerd)", () => {
  it("has no afterTurn hook (a reading per use instead of a MessageChannel per turn), and one where setImmediate exists", async () => {
    const withHook = await import("../src/engine/clock.ts");
    expect(typeof withHook.systemClock.afterTurn).toBe("function");
    const setImmediateSaved = globalThis.setImmediate;
    try {
      delete (globalThis as { setImmediate?: unknown }).setImmediate;
      vi.resetModules();
      const without = await import("../src/engine/clock.ts");
      expect(without.systemClock.afterTurn).toBeUndefined();
      expect("afterTurn" in without.systemClock).toBe(false);
    } finally {
      globalThis.setImmediate = setImmediateSaved;
      vi.resetModules();
    }
  });
});
