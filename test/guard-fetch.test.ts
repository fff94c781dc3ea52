import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  fetchWithDeadlines,
  isTimeoutError,
  upstreamDeadlines,
  withDeadlines,
} from "../src/index.ts";
import { drip, scriptedConsumer, trackedProducer } from "./support/fetch-peers.ts";

type FakeFetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/** An upstream on the virtual clock: headers after `headersAfter` ms, then the scripted body. */
function fakeUpstream(
  clock: ReturnType<typeof createVirtualClock>,
  headersAfter: number,
  body: ReturnType<typeof trackedProducer> | null,
) {
  const seen: { signal?: AbortSignal } = {};
  const fetch: FakeFetch = (_input, init) =>
    new Promise((resolve, reject) => {
      seen.signal = init?.signal ?? undefined;
      const timer = clock.setTimer(
        () => resolve(new Response(body?.stream ?? null, { status: 200, headers: { "x-upstream": "1" } })),
        headersAfter,
      );
      init?.signal?.addEventListener("abort", () => {
        clock.clearTimer(timer);
        reject(init.signal!.reason);
      });
    });
  return { fetch, seen };
}

describe("fetchWithDeadlines", () => {
  it("guards the upstream body: a stalled upstream fails at idle, and the upstream request is aborted", async () => {
    const clock = createVirtualClock();
    const body = trackedProducer(clock, [
      { at: 10, bytes: 100 },
      { at: 60_000, bytes: 100 },
    ]);
    const upstream = fakeUpstream(clock, 5, body);
    const pending = fetchWithDeadlines("http://upstream/", { deadlines: { idle: 1000, clock, fetch: upstream.fetch } });
    await clock.advance(5);
    const response = await pending;
    expect([response.status, response.headers.get("x-upstream")]).toEqual([200, "1"]);
    const consumer = scriptedConsumer(clock, response.body!);
    await clock.advance(2000);
    expect(isTimeoutError(consumer.error)).toBe(true);
    expect((consumer.error as Error).message).toMatch(/^upstream body stalled/);
    expect(upstream.seen.signal?.aborted).toBe(true);
    expect(upstream.seen.signal?.reason).toBe(consumer.error);
    expect(body.cancelReason).toBe(consumer.error);
    expect(upstreamDeadlines(response)?.state).toBe("timedOut");
  });

  it("is not blind under backpressure: while nobody reads, the upstream is not to blame", async () => {
    const clock = createVirtualClock();
    const body = trackedProducer(clock, drip(1000, 100, 1));
    const upstream = fakeUpstream(clock, 1, body);
    const pending = fetchWithDeadlines("http://upstream/", {
      deadlines: { idle: 1000, minRate: 10_000, clock, fetch: upstream.fetch },
    });
    await clock.advance(1);
    const response = await pending;
    await clock.advance(60_000); // the consumer (a slow client, say) reads nothing for a minute
    const consumer = scriptedConsumer(clock, response.body!);
    await clock.advance(100);
    expect(consumer).toMatchObject({ done: true, bytes: 1000, error: undefined });
  });

  it("idle covers the wait for the response headers", async () => {
    const clock = createVirtualClock();
    const upstream = fakeUpstream(clock, 10_000, null);
    const pending = fetchWithDeadlines("http://upstream/", { deadlines: { idle: 500, clock, fetch: upstream.fetch } });
    const settled = pending.catch((e: unknown) => e);
    await clock.advance(500);
    const error = await settled;
    expect(isTimeoutError(error)).toBe(true);
    expect(upstream.seen.signal?.reason).toBe(error);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("keeps the caller's signal working", async () => {
    const clock = createVirtualClock();
    const upstream = fakeUpstream(clock, 10_000, null);
    const caller = new AbortController();
    const pending = fetchWithDeadlines("http://upstream/", {
      signal: caller.signal,
      deadlines: { idle: 5000, clock, fetch: upstream.fetch },
    }).catch((e: unknown) => e);
    caller.abort(new Error("caller gave up"));
    expect(((await pending) as Error).message).toBe("caller gave up");
  });

  it("composes with withDeadlines: a proxy guards both sides", async () => {
    const clock = createVirtualClock();
    const body = trackedProducer(clock, drip(64 * 1024 * 4, 64 * 1024, 10));
    const upstream = fakeUpstream(clock, 1, body);
    const proxy = withDeadlines(
      async (request: Request) => {
        deadlines(request).response.set({ idle: 2000 });
        return fetchWithDeadlines("http://upstream/", { deadlines: { idle: 1000, clock, fetch: upstream.fetch } });
      },
      { clock, onTimeout: false },
    );
    const pending = proxy(new Request("http://proxy/"));
    await clock.advance(1);
    const response = (await pending) as Response;
    // The client stalls: the outbound deadline fires (2 s) and the upstream request is aborted too.
    const client = scriptedConsumer(clock, response.body!, { pauseAfter: () => 100_000 });
    await clock.advance(10_000);
    expect(body.cancelled).toBe(true); // the upstream was freed as soon as the client was cut
    await clock.advance(100_000); // the client's next read sees the cut
    expect(isTimeoutError(client.error)).toBe(true);
    expect((client.error as Error).message).toMatch(/^response body stalled/);
    expect(body.cancelled).toBe(true);
  });
});
