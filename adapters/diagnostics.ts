/**
 * The diagnostics channels every adapter publishes to (docs/observability.md: names and messages,
 * stable like error codes). `node:diagnostics_channel` is looked up with `process.getBuiltinModule`
 * at the first exchange, never imported statically, so the adapters still load where it is missing
 * (workerd without `nodejs_compat`): there nothing is published. With no subscriber, a hook costs a
 * property read (`hasSubscribers`): no message object is built.
 */
import type { AdapterHooks, ExchangeOutcome, TimeoutEvent } from "../src/http/adapter-contract.ts";

/** Published once per firing: the TimeoutEvent itself (the one onTimeout gets). */
export const TIMEOUT_CHANNEL = "stream-deadlines:timeout";
/** Published once per exchange, before the handler runs: `{ request }`. */
export const REQUEST_START_CHANNEL = "stream-deadlines:request:start";
/** Published once per exchange, when it is over: `{ request, outcome }`. */
export const REQUEST_END_CHANNEL = "stream-deadlines:request:end";

/** What `stream-deadlines:request:start` carries. */
export interface RequestStartMessage {
  /** The Request the handler gets (the one `TimeoutEvent.request` is). */
  request: Request;
}

/** What `stream-deadlines:request:end` carries. */
export interface RequestEndMessage {
  request: Request;
  outcome: ExchangeOutcome;
}

/** The part of a diagnostics_channel Channel used here. */
export interface DiagnosticsChannel {
  readonly hasSubscribers: boolean;
  publish(message: unknown): void;
  subscribe(onMessage: (message: unknown, name: string | symbol) => void): void;
  unsubscribe(onMessage: (message: unknown, name: string | symbol) => void): boolean;
}

interface DiagnosticsChannelModule {
  channel(name: string): DiagnosticsChannel;
}

/** The channels, or undefined where the runtime has no diagnostics_channel. */
export interface DeadlineChannels {
  timeout: DiagnosticsChannel;
  start: DiagnosticsChannel;
  end: DiagnosticsChannel;
}

/** `node:diagnostics_channel` where the runtime has it (Node, Deno, Bun, workerd with nodejs_compat). */
export function diagnosticsChannelModule(): DiagnosticsChannelModule | undefined {
  const host = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  if (typeof host?.getBuiltinModule !== "function") return undefined;
  return host.getBuiltinModule("node:diagnostics_channel") as DiagnosticsChannelModule | undefined;
}

/** Held here, so a channel with subscribers is never collected whatever the runtime's own bookkeeping. */
let channels: DeadlineChannels | undefined;

/** The library's channels (the same objects every time), or undefined where diagnostics_channel is missing. */
export function deadlineChannels(): DeadlineChannels | undefined {
  const dc = diagnosticsChannelModule();
  if (dc === undefined) return undefined;
  if (channels !== undefined) return channels;
  return (channels = {
    timeout: dc.channel(TIMEOUT_CHANNEL),
    start: dc.channel(REQUEST_START_CHANNEL),
    end: dc.channel(REQUEST_END_CHANNEL),
  });
}

/**
 * Takes hold of the library's channels now, for runtimes that drop a subscribed channel nobody holds.
 * Bun 1.4 does (oven-sh/bun#43086): its registry keeps channels weakly even while they have
 * subscribers, so `dc.subscribe(name, fn)` is lost at the next full GC unless someone holds the
 * Channel. Called when the Bun adapter is imported: a subscription made after that lives, because
 * `dc.channel(name)` hands back the channel held here. (Node, Deno and workerd hold subscribed
 * channels themselves.)
 */
export function holdDeadlineChannels(): void {
  deadlineChannels();
}

/** Never has a subscriber: where diagnostics_channel is missing. */
const NO_CHANNEL: DiagnosticsChannel = {
  hasSubscribers: false,
  publish() {},
  subscribe() {},
  unsubscribe: () => false,
};

// Looked up at the first exchange (not at import: importing an adapter touches no runtime module).
let timeoutChannel: DiagnosticsChannel | undefined;
let startChannel: DiagnosticsChannel | undefined;
let endChannel: DiagnosticsChannel | undefined;

function lookUp(): void {
  const channels = deadlineChannels();
  timeoutChannel = channels?.timeout ?? NO_CHANNEL;
  startChannel = channels?.start ?? NO_CHANNEL;
  endChannel = channels?.end ?? NO_CHANNEL;
}

/** Publishes the start of an exchange, when somebody listens. */
export function publishStart(request: Request): void {
  if (startChannel === undefined) lookUp();
  if (startChannel!.hasSubscribers) startChannel!.publish({ request } satisfies RequestStartMessage);
}

/** Publishes a firing, when somebody listens. */
export function publishTimeout(event: TimeoutEvent): void {
  reported.add(event.error);
  if (timeoutChannel === undefined) lookUp();
  if (timeoutChannel!.hasSubscribers) timeoutChannel!.publish(event);
}

/**
 * The errors of the firings an adapter (or the Hono middleware) was told of (every adapter's
 * `timedOut` hook publishes here): onTimeout has reported them, so a runtime's error handler that
 * meets one again (Deno.serve's onError, for a response body cut after its headers) need not.
 */
const reported = new WeakSet<object>();

/** Whether `error` is the TimeoutError of a firing an adapter was told of (and onTimeout reported). */
export function isReportedFiring(error: unknown): boolean {
  return typeof error === "object" && error !== null && reported.has(error);
}

/** Publishes the end of an exchange, when somebody listens. */
export function publishEnd(request: Request, outcome: ExchangeOutcome): void {
  if (endChannel === undefined) lookUp();
  if (endChannel!.hasSubscribers) endChannel!.publish({ request, outcome } satisfies RequestEndMessage);
}

/**
 * The base of an adapter's hooks for one exchange: the three diagnostics hooks, and `guardedBody`,
 * which the core sets through `answered` (whether it guards the body of its answer). Methods on the
 * prototype: one small object per request, no closures.
 */
export class ExchangeHooks implements AdapterHooks {
  /** The core guards the body of the Response it handed back: it tells that body's end. */
  guardedBody = false;

  /** Hook: whether the core guards the body of its answer. */
  answered(guarded: boolean): void {
    this.guardedBody = guarded;
  }

  /** Hook: diagnostics_channel, before the handler runs. */
  started(handlerRequest: Request): void {
    publishStart(handlerRequest);
  }

  /** Hook: diagnostics_channel, once per firing. */
  timedOut(event: TimeoutEvent): void {
    publishTimeout(event);
  }

  /** Hook: diagnostics_channel, when the exchange is over. */
  ended(handlerRequest: Request, outcome: ExchangeOutcome): void {
    publishEnd(handlerRequest, outcome);
  }
}

/** The three diagnostics hooks, for an adapter that shares one hooks object across requests. */
export const diagnosticsHooks = {
  started: publishStart,
  timedOut: publishTimeout,
  ended: publishEnd,
} as const satisfies AdapterHooks;
