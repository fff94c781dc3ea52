import { describe, expect, it } from "vitest";
import {
  createVirtualClock,
  deadlineDebugCounters,
  deadlines,
  fetchWithDeadlines,
  isTimeoutError,
  type TimeoutError,
  upstreamDeadlines,
  withDeadlines,
} from "../src/index.ts";
import { drip, scriptedConsumer, trackedProducer } from "./support/fetch-peers.ts";
import { type ScriptedChunk, scriptedSource } from "./support/scripted-streams.ts";

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

/** When a promise settled, on the virtual clock, and how (a live object). */
function settled<T>(clock: ReturnType<typeof createVirtualClock>, promise: Promise<T>) {
  const result: { at?: number; value?: T; error?: unknown } = {};
  promise.then(
    (value) => Object.assign(result, { at: clock.now(), value }),
    (error: unknown) => Object.assign(result, { at: clock.now(), error }),
  );
  return result;
}

interface OriginScript {
  /** Answers this long after it has read the whole request body (or after the call, when it has none). */
  answerAfter: number;
  /** Stops taking the request body after this many chunks (and never answers). Default: takes all. */
  takeChunks?: number;
  /** Waits this long before each read of the request body (an origin that takes slowly). Default 0. */
  takeEvery?: number;
  /** The response body (default: "answer"). */
  body?: () => ReadableStream<Uint8Array> | string;
  /** Never looks at its signal (a fetch that cannot be aborted). */
  ignoreSignal?: boolean;
}

/**
 * An origin behind a fake fetch on the virtual clock. It takes the call as fetch() does (`new
 * Request(input, init)`: init.body over the Request's own, init.signal over the Request's, and a
 * TypeError for a stream body without `duplex: "half"`), reads the request body as scripted, answers.
 */
function fakeOrigin(clock: ReturnType<typeof createVirtualClock>, script: OriginScript) {
  const seen = {
    calls: 0,
    bytes: 0,
    request: undefined as Request | undefined,
    bodyReadAt: undefined as number | undefined,
    initBody: undefined as BodyInit | null | undefined,
  };
  const fetch: FakeFetch = (input, init) => {
    seen.calls++;
    seen.initBody = init?.body;
    const request = new Request(input, init);
    seen.request = request;
    return new Promise<Response>((resolve, reject) => {
      let timer: unknown;
      let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
      if (!script.ignoreSignal) {
        request.signal.addEventListener("abort", () => {
          if (timer !== undefined) clock.clearTimer(timer);
          reader?.cancel(request.signal.reason).catch(() => {});
          reject(request.signal.reason);
        });
      }
      void (async () => {
        if (request.body !== null) {
          reader = request.body.getReader();
          for (let taken = 0; ; taken++) {
            if (taken === script.takeChunks) return; // stops taking: never answers
            if (script.takeEvery) await clock.sleep(script.takeEvery);
            const { done, value } = await reader.read();
            if (done) break;
            seen.bytes += value.byteLength;
          }
        }
        seen.bodyReadAt = clock.now();
        timer = clock.setTimer(
          () => resolve(new Response(script.body?.() ?? "answer", { status: 200 })),
          script.answerAfter,
        );
      })().catch(() => {});
    });
  };
  return { fetch, seen };
}

const UPLOAD_URL = "http://origin/upload";
const UPLOAD_FORMS = ["init.body", "init.body without duplex", "Request"] as const;
/** A POST of `stream` in one of the forms fetch() takes: [input, init]. */
function uploadCall(
  form: (typeof UPLOAD_FORMS)[number],
  stream: ReadableStream<Uint8Array>,
): [RequestInfo, RequestInit] {
  if (form === "Request")
    return [new Request(UPLOAD_URL, { method: "POST", body: stream, duplex: "half" } as RequestInit), {}];
  return [
    UPLOAD_URL,
    form === "init.body"
      ? ({ method: "POST", body: stream, duplex: "half" } as RequestInit)
      : { method: "POST", body: stream },
  ];
}

describe("fetchWithDeadlines: the clock runs on the upstream only while the upstream is to blame", () => {
  const nine = (): ScriptedChunk[] => drip(9 * 1000, 1000, 100); // 9 chunks, 100 ms apart

  it("our own upload is not the upstream's: 9 chunks 100 ms apart under idle 300 ms go through (in every form)", async () => {
    for (const form of UPLOAD_FORMS) {
      const clock = createVirtualClock();
      const producer = scriptedSource(clock, nine());
      const origin = fakeOrigin(clock, { answerAfter: 10 });
      const [input, init] = uploadCall(form, producer.stream);
      const result = settled(
        clock,
        fetchWithDeadlines(input, { ...init, deadlines: { idle: 300, clock, fetch: origin.fetch } }),
      );
      await clock.advance(5000);
      expect({ form, at: result.at, error: result.error }).toEqual({ form, at: 910, error: undefined });
      expect([await result.value!.text(), origin.seen.bytes, origin.seen.bodyReadAt]).toEqual(["answer", 9000, 900]);
      expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
    }
  });

  it("the upstream is to blame while a chunk of our upload waits for it: one that stops taking is cut at idle", async () => {
    const clock = createVirtualClock();
    const producer = scriptedSource(clock, nine());
    const origin = fakeOrigin(clock, { answerAfter: 10, takeChunks: 3 }); // takes 3 chunks (up to 300 ms), then stops
    const timeouts: TimeoutError[] = [];
    const result = settled(
      clock,
      fetchWithDeadlines(UPLOAD_URL, {
        method: "POST",
        body: producer.stream,
        duplex: "half",
        deadlines: { idle: 300, clock, fetch: origin.fetch, onTimeout: (e: TimeoutError) => void timeouts.push(e) },
      } as RequestInit),
    );
    await clock.advance(5000);
    // Chunk 4 is ready at 400 ms and waits for the upstream from then on: cut at 700 ms.
    const error = result.error as TimeoutError;
    expect(result.at).toBe(700);
    expect(error).toMatchObject({
      direction: "outbound",
      limit: "idle",
      subject: "upstream request body",
      bytes: 3000,
    });
    expect(error.message).toBe(
      "upstream request body stalled: the upstream took no data for 300 ms (idle limit 300 ms, 2.9 KiB sent)",
    );
    expect(origin.seen.request?.signal.reason).toBe(error); // the upstream call is aborted
    expect(producer.cancelReason).toBe(error); // and our producer cancelled
    expect(timeouts).toEqual([error]); // reported once
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("a chunk of our upload ready before the runtime asks for it (while it connects) waits on the upstream too", async () => {
    const clock = createVirtualClock();
    const producer = scriptedSource(clock, nine());
    const origin = fakeOrigin(clock, { answerAfter: 10, takeChunks: 0 }); // never takes a byte
    const result = settled(
      clock,
      fetchWithDeadlines(UPLOAD_URL, {
        method: "POST",
        body: producer.stream,
        duplex: "half",
        deadlines: { idle: 300, clock, fetch: origin.fetch },
      } as RequestInit),
    );
    await clock.advance(5000);
    // Our first chunk is ready at 100 ms; from then on it waits for the upstream: cut at 400 ms.
    expect(result.at).toBe(400);
    expect(result.error).toMatchObject({ direction: "outbound", limit: "idle", bytes: 0 });
    expect(producer.cancelReason).toBe(result.error);
  });

  it("the wait for the headers starts once the upstream has taken our whole body; idle bounds it", async () => {
    const run = async (answerAfter: number) => {
      const clock = createVirtualClock();
      const producer = scriptedSource(clock, nine());
      const origin = fakeOrigin(clock, { answerAfter });
      const result = settled(
        clock,
        fetchWithDeadlines(UPLOAD_URL, {
          method: "POST",
          body: producer.stream,
          duplex: "half",
          deadlines: { idle: 300, clock, fetch: origin.fetch },
        } as RequestInit),
      );
      await clock.advance(5000);
      return result;
    };
    const inTime = await run(290);
    expect([inTime.at, inTime.error, inTime.value?.status]).toEqual([1190, undefined, 200]);
    const late = await run(310);
    expect(late.at).toBe(1200);
    expect(late.error).toMatchObject({ direction: "inbound", limit: "idle", subject: "upstream body", bytes: 0 });
  });

  it("a body given whole (string, bytes, Blob, FormData, URLSearchParams) is sent as given; the upstream is to blame from the call", async () => {
    const bodies: Record<string, () => BodyInit> = {
      string: () => "hello",
      ArrayBuffer: () => new Uint8Array(5).buffer,
      Uint8Array: () => new Uint8Array(5),
      Blob: () => new Blob(["hello"]),
      FormData: () => {
        const form = new FormData();
        form.set("a", "hello");
        return form;
      },
      URLSearchParams: () => new URLSearchParams({ a: "hello" }),
    };
    for (const [kind, body] of Object.entries(bodies)) {
      for (const answerAfter of [290, 310]) {
        const clock = createVirtualClock();
        const origin = fakeOrigin(clock, { answerAfter });
        const given = body();
        const result = settled(
          clock,
          fetchWithDeadlines(UPLOAD_URL, {
            method: "POST",
            body: given,
            deadlines: { idle: 300, clock, fetch: origin.fetch },
          }),
        );
        await clock.advance(5000);
        // fetch() got the very body given (not a stream: its length stays known), and sent all of it.
        expect({ kind, same: origin.seen.initBody === given }).toEqual({ kind, same: true });
        const type = (request: Request | undefined) => request?.headers.get("content-type")?.split(";")[0];
        const expected = new Request(UPLOAD_URL, { method: "POST", body: given });
        expect({ kind, bytes: origin.seen.bytes, type: type(origin.seen.request) }).toEqual({
          kind,
          bytes: (await expected.arrayBuffer()).byteLength,
          type: type(expected),
        });
        if (answerAfter === 290) expect([kind, result.at, result.error]).toEqual([kind, 290, undefined]);
        else expect([kind, result.at, (result.error as TimeoutError).limit]).toEqual([kind, 300, "idle"]);
      }
    }
  });

  it("a Request's body is a stream whatever it was made from: it is timed and sent as a stream", async () => {
    for (const answerAfter of [290, 310]) {
      const clock = createVirtualClock();
      const origin = fakeOrigin(clock, { answerAfter });
      const request = new Request(UPLOAD_URL, { method: "POST", body: "hello" });
      const result = settled(
        clock,
        fetchWithDeadlines(request, { deadlines: { idle: 300, clock, fetch: origin.fetch } }),
      );
      await clock.advance(5000);
      expect(origin.seen.initBody).toBeInstanceOf(ReadableStream);
      expect(origin.seen.bytes).toBe(5);
      // Taken at once (at 0 ms): the header wait starts then.
      if (answerAfter === 290) expect([result.at, result.error]).toEqual([290, undefined]);
      else expect([result.at, (result.error as TimeoutError).limit]).toEqual([300, "idle"]);
    }
  });

  it("total counts from the call over the whole exchange: the upload, the header wait and the body", async () => {
    const run = async (total: number) => {
      const clock = createVirtualClock();
      const producer = scriptedSource(clock, nine()); // taken by 900 ms
      const body = trackedProducer(clock, drip(10_000, 1000, 100, 910)); // from 1010 ms to 1910 ms
      const origin = fakeOrigin(clock, { answerAfter: 10, body: () => body.stream });
      const timeouts: TimeoutError[] = [];
      const result = settled(
        clock,
        fetchWithDeadlines(UPLOAD_URL, {
          method: "POST",
          body: producer.stream,
          duplex: "half",
          deadlines: { total, clock, fetch: origin.fetch, onTimeout: (e: TimeoutError) => void timeouts.push(e) },
        } as RequestInit),
      );
      await clock.advance(910);
      const consumer = result.value ? scriptedConsumer(clock, result.value.body!) : undefined;
      await clock.advance(5000);
      return { result, consumer, producer, body, timeouts };
    };
    const duringUpload = await run(500);
    expect([duringUpload.result.at, duringUpload.result.error]).toEqual([500, duringUpload.timeouts[0]]);
    expect(duringUpload.timeouts).toMatchObject([{ limit: "total", elapsed: 500 }]);
    expect(duringUpload.producer.cancelReason).toBe(duringUpload.timeouts[0]);
    const duringBody = await run(1500);
    expect(duringBody.consumer?.endedAt).toBe(1500);
    expect(duringBody.consumer?.error).toBe(duringBody.timeouts[0]);
    expect(duringBody.timeouts).toMatchObject([{ limit: "total", elapsed: 1500, subject: "upstream body" }]);
    expect(duringBody.body.cancelReason).toBe(duringBody.timeouts[0]);
  });

  it("minRate runs on our upload while a chunk waits for the upstream, never on our producer's time", async () => {
    const limits = { minRate: 4096, grace: 1000 };
    // The upstream takes 1 kB a second of an upload that is all ready: too slow, cut by the rate.
    let clock = createVirtualClock();
    let producer = scriptedSource(clock, drip(64 * 1000, 1000, 1));
    let origin = fakeOrigin(clock, { answerAfter: 10, takeEvery: 1000 });
    const slowTaker = settled(
      clock,
      fetchWithDeadlines(UPLOAD_URL, {
        method: "POST",
        body: producer.stream,
        duplex: "half",
        deadlines: { ...limits, clock, fetch: origin.fetch },
      } as RequestInit),
    );
    await clock.advance(70_000);
    expect(slowTaker.error).toMatchObject({
      direction: "outbound",
      limit: "minRate",
      subject: "upstream request body",
    });
    expect(slowTaker.at).toBeLessThan(5000);
    expect(producer.cancelReason).toBe(slowTaker.error);
    // Our producer makes 1 kB a second and the upstream takes each at once: not its fault, nothing fires.
    clock = createVirtualClock();
    producer = scriptedSource(clock, drip(20 * 1000, 1000, 1000));
    origin = fakeOrigin(clock, { answerAfter: 10 });
    const slowProducer = settled(
      clock,
      fetchWithDeadlines(UPLOAD_URL, {
        method: "POST",
        body: producer.stream,
        duplex: "half",
        deadlines: { ...limits, clock, fetch: origin.fetch },
      } as RequestInit),
    );
    await clock.advance(70_000);
    expect([slowProducer.at, slowProducer.error, origin.seen.bytes]).toEqual([20_010, undefined, 20_000]);
  });

  it("minRate does not run during the header wait (rates are for bodies); the body is then held to it", async () => {
    const limits = { idle: 1500, minRate: 4096, grace: 300 };
    const run = async (answerAfter: number, deadlineLimits: object) => {
      const clock = createVirtualClock();
      const body = trackedProducer(clock, [{ at: answerAfter + 10, bytes: 8192 }], 60_000); // then stalls
      const origin = fakeOrigin(clock, { answerAfter, body: () => body.stream });
      const result = settled(
        clock,
        fetchWithDeadlines("http://origin/", { deadlines: { ...deadlineLimits, clock, fetch: origin.fetch } }),
      );
      await clock.advance(answerAfter + 1);
      const consumer = result.value ? scriptedConsumer(clock, result.value.body!) : undefined;
      await clock.advance(100_000);
      return { result, consumer };
    };
    // The measurement: an origin answering after 800 ms used to be cut at ~300 ms, "0 B/s".
    const slowHeaders = await run(800, limits);
    expect([slowHeaders.result.at, slowHeaders.result.error]).toEqual([800, undefined]);
    // Its body then stalls after 8 KiB: the rate cuts it (8 KiB of credit are capped at 4096 × 0.3 s).
    const bodyError = slowHeaders.consumer!.error as TimeoutError;
    expect(bodyError).toMatchObject({ direction: "inbound", limit: "minRate", subject: "upstream body", bytes: 8192 });
    expect(slowHeaders.consumer!.endedAt).toBe(810 + 300);
    // The header wait is bounded by idle.
    const noHeaders = await run(2000, limits);
    expect(noHeaders.result.at).toBe(1500);
    expect(noHeaders.result.error).toMatchObject({ code: "ERR_DEADLINE_IDLE", bytes: 0 });
    // With minRate alone, nothing bounds the header wait (total would).
    const rateOnly = await run(60_000, { minRate: 4096 });
    expect([rateOnly.result.at, rateOnly.result.error]).toEqual([60_000, undefined]);
  });

  it("a Request's own signal is honoured: aborted at 100 ms, the call rejects at once and cancels the upstream and our upload", async () => {
    for (const fetchKind of ["honours its signal", "ignores its signal"] as const) {
      const clock = createVirtualClock();
      const producer = scriptedSource(clock, drip(9 * 1000, 1000, 1000)); // an upload still under way
      const origin = fakeOrigin(clock, { answerAfter: 10, ignoreSignal: fetchKind === "ignores its signal" });
      const client = new AbortController();
      const other = new AbortController(); // init.signal too: both count
      const request = new Request(UPLOAD_URL, {
        method: "POST",
        body: producer.stream,
        duplex: "half",
        signal: client.signal,
      } as RequestInit);
      const result = settled(
        clock,
        fetchWithDeadlines(request, { signal: other.signal, deadlines: { idle: 1500, clock, fetch: origin.fetch } }),
      );
      clock.setTimer(() => client.abort(), 100);
      await clock.advance(5000);
      expect({ fetchKind, at: result.at }).toEqual({ fetchKind, at: 100 });
      expect(result.error).toBeInstanceOf(DOMException);
      expect((result.error as DOMException).name).toBe("AbortError");
      expect(result.error).toBe(client.signal.reason);
      expect(origin.seen.request?.signal.aborted).toBe(true);
      expect(producer.cancelReason).toBe(client.signal.reason);
      expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
    }
  });

  it("a signal already aborted: nothing is sent, the body is cancelled, the call rejects with the reason", async () => {
    const clock = createVirtualClock();
    const producer = scriptedSource(clock, nine());
    const origin = fakeOrigin(clock, { answerAfter: 10 });
    const reason = new Error("gone");
    const request = new Request(UPLOAD_URL, {
      method: "POST",
      body: producer.stream,
      duplex: "half",
      signal: AbortSignal.abort(reason),
    } as RequestInit);
    await expect(fetchWithDeadlines(request, { deadlines: { idle: 300, clock, fetch: origin.fetch } })).rejects.toBe(
      reason,
    );
    expect([origin.seen.calls, producer.cancelReason]).toEqual([0, reason]);
    expect(deadlineDebugCounters(clock).scheduledDeadlines).toBe(0);
  });

  it("an abort after the headers errors the body at once with the reason, as fetch() does (either signal)", async () => {
    for (const which of ["Request's signal", "init.signal"] as const) {
      const clock = createVirtualClock();
      const body = trackedProducer(clock, drip(10_000, 1000, 1000));
      const origin = fakeOrigin(clock, { answerAfter: 10, body: () => body.stream });
      const caller = new AbortController();
      const input =
        which === "init.signal" ? "http://origin/" : new Request("http://origin/", { signal: caller.signal });
      const init = which === "init.signal" ? { signal: caller.signal } : {};
      const response = settled(
        clock,
        fetchWithDeadlines(input, { ...init, deadlines: { idle: 5000, clock, fetch: origin.fetch } }),
      );
      await clock.advance(10);
      const consumer = scriptedConsumer(clock, response.value!.body!);
      await clock.advance(1500); // one chunk read, the next read is pending
      const reason = new Error("the caller left");
      caller.abort(reason);
      await clock.advance(0);
      expect({ which, bytes: consumer.bytes, error: consumer.error, at: consumer.endedAt }).toEqual({
        which,
        bytes: 1000,
        error: reason,
        at: 1510,
      });
      expect([origin.seen.request?.signal.reason, body.cancelReason]).toEqual([reason, reason]);
      expect(upstreamDeadlines(response.value!)?.state).toBe("cancelled");
    }
  });
});
