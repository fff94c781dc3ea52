/** A virtual clock and a record of every timeout reported on it, for tests of withDeadlines. */
import { createVirtualClock, type TimeoutEvent } from "../../src/index.ts";

export function virtualClockAndTimeouts() {
  const clock = createVirtualClock();
  const events: TimeoutEvent[] = [];
  return { clock, events, onTimeout: (e: TimeoutEvent) => void events.push(e) };
}
