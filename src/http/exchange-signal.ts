/**
 * An exchange's signal and its watch on the client: the AbortSignal the handler gets
 * (`deadlines(request).signal`), made at its first use, and a listener on the client's own signal,
 * added only once something would react to the client going away. It aborts once, with the first
 * reason: a deadline's TimeoutError, or why the client went away.
 */
import { liveCounts } from "../engine/debug-counters.ts";

/** What the exchange does when the client goes away (the signal has aborted already). */
export interface ClientWatcher {
  clientWentAway(why: unknown): void;
}

export const clientWentAwayError = (): DOMException => new DOMException("The client went away", "AbortError");

export class ExchangeSignal {
  /** Why the signal aborted; undefined until it does (a reason is never undefined). */
  reason: unknown;
  #controller: AbortController | undefined;
  /** The client's signal, while it is listened to. */
  #listeningTo: AbortSignal | undefined;
  /**
   * Where the client's signal is read: the handler's Request, or, when that is a copy (a guarded
   * body), the original's signal. The original Request itself is not kept: an adapter's (srvx's)
   * holds its own URL, headers and context objects, about 1 KB a request that nothing needs once the
   * copy exists.
   */
  #source: { readonly signal: AbortSignal | undefined | null };
  #watcher: ClientWatcher;

  constructor(source: { readonly signal: AbortSignal | undefined | null }, watcher: ClientWatcher) {
    this.#source = source;
    this.#watcher = watcher;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.reason !== undefined) this.#controller.abort(this.reason);
      else this.watch();
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.#controller?.abort(reason);
  }

  /** Listens for the client going away; a client gone already is reacted to at once. */
  watch(): void {
    if (this.#listeningTo !== undefined || this.reason !== undefined) return;
    const clientSignal = this.#source.signal;
    if (clientSignal == null) return;
    if (clientSignal.aborted) {
      this.#wentAway();
      return;
    }
    this.#listeningTo = clientSignal;
    liveCounts.listeners++;
    clientSignal.addEventListener("abort", this); // removed by handleEvent (unwatch)
  }

  unwatch(): void {
    if (this.#listeningTo === undefined) return;
    liveCounts.listeners--;
    this.#listeningTo.removeEventListener("abort", this);
    this.#listeningTo = undefined;
  }

  /** EventListener interface: the client's signal aborted (an object listener needs no closure). */
  handleEvent(): void {
    this.unwatch();
    this.#wentAway();
  }

  #wentAway(): void {
    const why: unknown = this.#source.signal?.reason ?? clientWentAwayError();
    this.abort(why);
    this.#watcher.clientWentAway(why);
  }
}
