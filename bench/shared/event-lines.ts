/** The JSON event lines a bench's server process prints on stdout (`{"event":…}`), awaited by name. */
import type { Readable } from "node:stream";
import { createInterface } from "node:readline";

// biome-ignore lint/suspicious/noExplicitAny: parsed JSON lines of the server, read by field
export type Json = Record<string, any>;

export class EventLines {
  readonly #events: Json[] = [];
  #waiters: { name: string; resolve: (e: Json) => void }[] = [];

  /** Reads `stdout` line by line; a line that is not JSON goes to `log`. */
  constructor(stdout: Readable, log: (line: string) => void) {
    createInterface({ input: stdout }).on("line", (line) => {
      let event: Json;
      try {
        event = JSON.parse(line) as Json;
      } catch {
        log(`server: ${line}`);
        return;
      }
      const waiter = this.#waiters.find((w) => w.name === event.event);
      if (waiter !== undefined) {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        waiter.resolve(event);
      } else this.#events.push(event);
    });
  }

  /** The next event of that name (one already printed, or the next to come), or an error after `timeoutMs`. */
  next(name: string, timeoutMs: number): Promise<Json> {
    const i = this.#events.findIndex((e) => e.event === name);
    if (i >= 0) return Promise.resolve(this.#events.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${name}" from the server within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        name,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }
}
