/**
 * What every runtime adapter shares: its options are withDeadlines' options, except that the
 * policy also gets the client's address (each runtime finds it its own way).
 */
import type { RequestPolicy, WithDeadlinesOptions } from "../src/index.ts";
import { OPTION_KEYS, checkKeys, checkObject, fail, fieldError, typeOf } from "../src/http/adapter-contract.ts";

export type RuntimeName = "node" | "deno" | "bun" | "workers";

export interface ClientInfo {
  /** The peer's IP address as the runtime sees it (no proxy headers are trusted). */
  address: string | undefined;
  runtime: RuntimeName;
}

/** A policy that also sees the client: per route, per method, and per client address. */
export type AdapterPolicy<Args extends unknown[] = unknown[]> = (
  request: Request,
  client: ClientInfo,
  ...runtimeArgs: Args
) => RequestPolicy | undefined | null | void;

export interface AdapterOptions<Args extends unknown[] = unknown[]> extends Omit<WithDeadlinesOptions<Args>, "policy"> {
  policy?: AdapterPolicy<Args>;
}

/**
 * Refuses options that are not an object, and unknown keys (a typo such as `idel` or `prot`), at
 * once with a TypeError naming the key: the adapter's own keys (`ownKeys`) and withDeadlines'.
 */
export function checkAdapterOptions(where: string, options: unknown, ownKeys: readonly string[] = []): void {
  checkObject(where, options);
  checkKeys(where, options, [...ownKeys, ...OPTION_KEYS]);
}

/** The `port` and `hostname` of a serve() helper: a whole port number 0-65535, a non-empty host name. */
export function checkListenOptions(where: string, port: unknown, hostname: unknown): void {
  if (typeof port !== "number") throw fieldError(where, "port", "a number", typeOf(port));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw fieldError(where, "port", "a whole number from 0 to 65535", port, RangeError);
  if (typeof hostname !== "string" || hostname === "")
    throw fieldError(where, "hostname", "a non-empty string", typeof hostname === "string" ? '""' : typeOf(hostname));
}

/** Turns an adapter policy into withDeadlines' policy, looking the client address up only when asked. */
export function policyWithClient<Args extends unknown[]>(
  options: AdapterOptions<Args>,
  runtime: RuntimeName,
  addressOf: (request: Request, ...args: Args) => string | undefined,
): WithDeadlinesOptions<Args> {
  checkAdapterOptions(`stream-deadlines/${runtime}`, options);
  const { policy, ...rest } = options;
  if (policy === undefined) return rest;
  if (typeof policy !== "function") fail(`stream-deadlines/${runtime}`, "policy must be a function");
  return {
    ...rest,
    policy: (request, ...args) => policy(request, { address: addressOf(request, ...args), runtime }, ...args),
  };
}
