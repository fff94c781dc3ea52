/**
 * What every runtime adapter shares: its options are withDeadlines' options, except that the
 * policy also gets the client's address (each runtime finds it its own way).
 */
import type { RequestPolicy, WithDeadlinesOptions } from "../src/index.ts";

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

/** Turns an adapter policy into withDeadlines' policy, looking the client address up only when asked. */
export function policyWithClient<Args extends unknown[]>(
  options: AdapterOptions<Args>,
  runtime: RuntimeName,
  addressOf: (request: Request, ...args: Args) => string | undefined,
): WithDeadlinesOptions<Args> {
  const { policy, ...rest } = options;
  if (policy === undefined) return rest;
  if (typeof policy !== "function") throw new TypeError(`stream-deadlines/${runtime}: policy must be a function`);
  return {
    ...rest,
    policy: (request, ...args) => policy(request, { address: addressOf(request, ...args), runtime }, ...args),
  };
}
