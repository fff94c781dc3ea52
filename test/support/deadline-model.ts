/**
 * The reference model: a small simulator of the semantics in README, written independently of
 * src/ and with no streams or timers in it. Step 1 turns a scripted schedule into the timeline of
 * "the peer is to blame from t" / "n bytes moved at t" / "closed at t"; step 2 walks that timeline
 * with exact arithmetic and says whether, when and why a deadline fires.
 */

export interface ModelLimits {
  idle?: number | null;
  minRate?: number | null;
  grace?: number | null;
  total?: number | null;
}

export interface Schedule {
  direction: "inbound" | "outbound";
  limits: ModelLimits;
  /** Chunk i is available from the peer (inbound) or producer (outbound) at `at`. */
  chunks: { at: number; bytes: number }[];
  /** The source ends at this time (or when it is next read, if later). */
  endAt: number;
  /** The consumer's first read. */
  firstReadAt: number;
  /** Pause after the consumer received its i-th piece before reading again. */
  pauses: number[];
  /** Limit changes made from outside at these times. */
  changes: { at: number; patch: ModelLimits }[];
  /** Outbound: the consumer reads BYOB into SLICE-byte buffers (every chunk is taken SLICE bytes at a time). */
  byob?: boolean;
}

export type TimelineEvent =
  | { t: number; kind: "blameStarts" }
  | { t: number; kind: "bytes"; n: number }
  | { t: number; kind: "closed" }
  | { t: number; kind: "change"; patch: ModelLimits };

export type Outcome =
  | { kind: "closed"; at: number; bytes: number; ambiguous: boolean }
  | { kind: "timeout"; at: number; limit: "idle" | "minRate" | "total"; bytes: number; ambiguous: boolean };

import { BURST_GAP_MS, OUTBOUND_BURST_CREDIT_MAX } from "../../src/engine/tracker.ts";

export const SLICE = 64 * 1024;
const EPSILON = 1e-6;

/** Step 1: when is the peer to blame, and when do bytes move. */
export function timelineOf(s: Schedule): TimelineEvent[] {
  const events: TimelineEvent[] = [];
  const pauseAfter = (i: number) => s.pauses[i] ?? 0;
  if (s.direction === "inbound") {
    // A read waits on the peer from the moment it is made until the chunk is there.
    let readAt = s.firstReadAt;
    s.chunks.forEach((chunk, i) => {
      events.push({ t: readAt, kind: "blameStarts" });
      const deliveredAt = Math.max(readAt, chunk.at);
      events.push({ t: deliveredAt, kind: "bytes", n: chunk.bytes });
      readAt = deliveredAt + pauseAfter(i);
    });
    events.push({ t: readAt, kind: "blameStarts" });
    events.push({ t: Math.max(readAt, s.endAt), kind: "closed" });
  } else {
    // The guard fetches the next chunk as soon as the previous one was taken; a fetched piece that
    // the consumer has not asked for yet waits on the consumer. A chunk over 64 KiB that waited
    // BURST_GAP_MS or more for the consumer goes as 64 KiB pieces, and so do its rest and the first
    // chunk; a later one the consumer asked for sooner goes whole. BYOB reads of 64 KiB take every
    // chunk 64 KiB at a time.
    let askAt = s.firstReadAt;
    let fetchFrom = s.firstReadAt;
    let piece = 0;
    for (const chunk of s.chunks) {
      let readyAt = Math.max(chunk.at, fetchFrom);
      const size = s.byob || piece === 0 || askAt - readyAt >= BURST_GAP_MS ? SLICE : chunk.bytes;
      for (let left = chunk.bytes; left > 0; left -= size) {
        const n = Math.min(size, left);
        if (askAt > readyAt) events.push({ t: readyAt, kind: "blameStarts" });
        const takenAt = Math.max(askAt, readyAt);
        events.push({ t: takenAt, kind: "bytes", n });
        askAt = takenAt + pauseAfter(piece++);
        readyAt = takenAt;
      }
      fetchFrom = readyAt;
    }
    events.push({ t: Math.max(s.endAt, fetchFrom), kind: "closed" });
  }
  return events;
}

/** Step 2: walk the timeline (and the limit changes) with exact arithmetic. */
export function evaluate(s: Schedule): Outcome {
  const all: TimelineEvent[] = [
    ...timelineOf(s),
    ...s.changes.map((c) => ({ t: c.at, kind: "change" as const, patch: c.patch })),
  ];
  // Stable sort: timeline order is kept for equal times; changes at equal times come after.
  all.sort((a, b) => a.t - b.t);

  let idle: number | null = null;
  let minRate: number | null = null;
  let grace = 5000;
  let total: number | null = null;
  let blamed = false;
  let blameFrom = 0;
  let credit = 0;
  let creditAt = 0;
  let bytes = 0;
  let ambiguous = false;
  // Outbound bursts: bytes taken since the last blamed wait of BURST_GAP_MS or more raise the cap (up to 4 MiB).
  let burst = 0;

  const setLimits = (patch: ModelLimits, t: number) => {
    const oldRate = minRate;
    const oldGrace = grace;
    if (patch.idle !== undefined) idle = patch.idle || null;
    if (patch.minRate !== undefined) minRate = patch.minRate || null;
    if (patch.grace !== undefined) grace = patch.grace ?? 5000;
    if (patch.total !== undefined) total = patch.total || null;
    if (minRate !== null && (minRate !== oldRate || grace !== oldGrace)) {
      credit = (minRate * grace) / 1000;
      creditAt = t;
    }
  };

  const due = (): { limit: "idle" | "minRate" | "total"; at: number }[] => {
    const list: { limit: "idle" | "minRate" | "total"; at: number }[] = [];
    if (total !== null) list.push({ limit: "total", at: total });
    if (blamed && idle !== null) list.push({ limit: "idle", at: blameFrom + idle });
    if (blamed && minRate !== null) list.push({ limit: "minRate", at: creditAt + (credit * 1000) / minRate });
    return list.sort((a, b) => a.at - b.at);
  };

  const fireIfDue = (upTo: number, now: number, nextEventAt: number): Outcome | undefined => {
    const list = due();
    const first = list[0];
    if (first === undefined || first.at > upTo + EPSILON) return undefined;
    // Too close to call: another limit due at the same instant, or an event at the same instant.
    if (list[1] !== undefined && list[1].at - first.at < EPSILON) ambiguous = true;
    if (Math.abs(first.at - nextEventAt) < EPSILON) ambiguous = true;
    return { kind: "timeout", at: Math.max(first.at, now), limit: first.limit, bytes, ambiguous };
  };

  setLimits(s.limits, 0);
  let now = 0;
  for (const event of all) {
    const fired = fireIfDue(event.t, now, event.t);
    if (fired) return fired;
    now = event.t;
    switch (event.kind) {
      case "blameStarts":
        blamed = true;
        blameFrom = event.t;
        creditAt = event.t;
        break;
      case "bytes":
        if (blamed && minRate !== null) credit -= (minRate * (event.t - creditAt)) / 1000;
        if (blamed && event.t - blameFrom >= BURST_GAP_MS) burst = 0;
        blamed = false;
        bytes += event.n;
        if (minRate !== null) {
          let cap = (minRate * grace) / 1000;
          if (s.direction === "outbound") {
            burst += event.n;
            cap = Math.max(cap, Math.min(burst, OUTBOUND_BURST_CREDIT_MAX));
          }
          credit = Math.min(cap, credit + event.n);
        }
        break;
      case "closed":
        return { kind: "closed", at: event.t, bytes, ambiguous };
      case "change": {
        setLimits(event.patch, event.t);
        const firedNow = fireIfDue(event.t, event.t, Infinity);
        if (firedNow) return firedNow;
        break;
      }
    }
  }
  throw new Error("model: timeline without an end");
}
