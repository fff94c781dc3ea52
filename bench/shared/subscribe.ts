/**
 * `--subscribed` on a bench server: a no-op subscriber on each of the library's diagnostics channels
 * (docs/observability.md), so the bench measures what publishing costs when an APM or a logger
 * listens. Every publish then builds its message and calls the subscriber.
 */
import { REQUEST_END_CHANNEL, REQUEST_START_CHANNEL, TIMEOUT_CHANNEL } from "../../adapters/diagnostics.ts";

interface ChannelModule {
  channel(name: string): { subscribe(onMessage: (message: unknown) => void): void };
}

/** Printed at the first message, so the bench can check that messages do arrive. */
export const FIRST_MESSAGE_LINE = "bench subscriber: first diagnostics message";
let messagesSeen = 0;
const onMessage = () => {
  if (messagesSeen++ === 0) console.log(FIRST_MESSAGE_LINE);
};

/** Subscribes when `--subscribed` is among the arguments; throws where the runtime has no diagnostics_channel. */
export function subscribeIfAsked(args: readonly string[]): boolean {
  if (!args.includes("--subscribed")) return false;
  const host = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const dc = host?.getBuiltinModule?.("node:diagnostics_channel") as ChannelModule | undefined;
  if (dc === undefined) throw new Error("--subscribed: this runtime has no node:diagnostics_channel");
  for (const name of [TIMEOUT_CHANNEL, REQUEST_START_CHANNEL, REQUEST_END_CHANNEL])
    dc.channel(name).subscribe(onMessage);
  return true;
}

/**
 * A bench server's arguments for a variant name: "subscribed" is the guarded server with `--subscribed`;
 * "guarded-compat" the guarded server with workerd's `nodejs_compat` and no subscriber (on Workers, the
 * subscriber needs that flag: this tells the flag's cost from the subscriber's).
 */
export function serverVariantArgs(variant: string): string[] {
  if (variant === "subscribed") return ["--variant", "guarded", "--subscribed"];
  if (variant === "guarded-compat") return ["--variant", "guarded", "--nodejs-compat"];
  return ["--variant", variant];
}
