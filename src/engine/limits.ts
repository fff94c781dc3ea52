/**
 * The three limits of one body direction, and their validation. Bad input throws at once,
 * naming the field and the value, so a typo never turns into "no limit" silently.
 */

/** Limits as the user writes them. Every field is optional; `0` or `null` turns a limit off. */
export interface DeadlineLimits {
  /** Longest wait, in ms, for the peer to deliver (inbound) or take (outbound) a single byte. */
  idle?: number | null;
  /** Minimum average rate in bytes per second, measured on the time the peer is to blame. */
  minRate?: number | null;
  /** How far, in ms, the peer may fall behind `minRate` (also the most credit it can bank). Default 5000. */
  grace?: number | null;
  /** Absolute deadline for the whole body: ms after the guard started, or a point in time (`Date`). */
  total?: number | Date | null;
}

/** Limits after validation: `null` means off. `total` is kept as given (ms from start, or epoch ms). */
export interface ResolvedLimits {
  idle: number | null;
  minRate: number | null;
  grace: number;
  /** ms after the guard started, or null. */
  total: number | null;
  /** When `total` was given as a Date: its epoch milliseconds. */
  totalAt: number | null;
}

import { DEFAULT_GRACE_MS } from "./constants.ts";
import { checkKeys, checkObject, fail, fieldError, kind } from "./validate.ts";

export { DEFAULT_GRACE_MS };

const LIMIT_KEYS = ["idle", "minRate", "grace", "total"];

/**
 * The largest value of any limit. Far beyond any real deadline or rate (2^53 - 1 ms is 285,000
 * years), and it keeps the credit arithmetic finite: a minRate of 1e308 made `minRate × grace`
 * Infinity, and the rate limit then silently never fired.
 */
const MAX_LIMIT = Number.MAX_SAFE_INTEGER;

export function emptyLimits(): ResolvedLimits {
  return { idle: null, minRate: null, grace: DEFAULT_GRACE_MS, total: null, totalAt: null };
}

function describe(value: unknown): string {
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "bigint") return `bigint ${value}n`;
  if (typeof value === "number") return String(value);
  if (value instanceof Date) return `Invalid Date`;
  return kind(value);
}

const OFF = " (or 0/null to turn it off)";

/** A positive finite number, or 0/null (off). `undefined` means "not given". */
function checkOptionalPositive(where: string, field: string, value: unknown, unit: string): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === null || value === 0) return null;
  if (typeof value !== "number") throw fieldError(where, field, `a number of ${unit}${OFF}`, describe(value));
  if (!(value >= 0 && value < Infinity))
    // NaN, Infinity or negative
    throw fieldError(where, field, `a positive finite number of ${unit}${OFF}`, describe(value), RangeError);
  if (value > MAX_LIMIT)
    throw fieldError(where, field, `at most Number.MAX_SAFE_INTEGER ${unit}${OFF}`, describe(value), RangeError);
  return value;
}

/**
 * Validates a limits patch. Absent or `undefined` fields are left out of the result (unchanged when
 * applied); `0`/`null` become `null` (off). Throws TypeError/RangeError naming the field.
 */
export function parseLimits(input: unknown, where = "stream-deadlines"): Partial<ResolvedLimits> {
  if (input === undefined || input === null) return {};
  checkObject(where, input, "limits must be an object like { idle, minRate, grace, total }", describe);
  const record = input as Record<string, unknown>;
  checkKeys(where, record, LIMIT_KEYS, "idle, minRate, grace or total", "limit");
  const out: Partial<ResolvedLimits> = {};
  const idle = checkOptionalPositive(where, "idle", record.idle, "milliseconds");
  if (idle !== undefined) out.idle = idle;
  const minRate = checkOptionalPositive(where, "minRate", record.minRate, "bytes per second");
  if (minRate !== undefined) out.minRate = minRate;
  const grace = record.grace;
  if (grace === null) out.grace = DEFAULT_GRACE_MS;
  else if (grace !== undefined) {
    if (typeof grace !== "number") throw fieldError(where, "grace", "a number of milliseconds", describe(grace));
    if (!(grace > 0 && grace <= MAX_LIMIT)) {
      const expected = "a positive finite number of milliseconds, at most Number.MAX_SAFE_INTEGER";
      throw fieldError(where, "grace", expected, describe(grace), RangeError);
    }
    if (record.minRate === 0 || record.minRate === null)
      fail(
        where,
        `grace is ${grace} but minRate is ${record.minRate}: a grace period needs a minimum rate`,
        ": ",
        RangeError,
      );
    out.grace = grace;
  }
  const total = record.total;
  if (total instanceof Date) {
    const at = total.getTime();
    if (Number.isNaN(at))
      throw fieldError(where, "total", "a valid Date or a number of milliseconds", "Invalid Date", RangeError);
    out.total = null;
    out.totalAt = at;
  } else {
    const ms = checkOptionalPositive(where, "total", total, "milliseconds (or a Date)");
    if (ms !== undefined) {
      out.total = ms;
      out.totalAt = null;
    }
  }
  return out;
}
