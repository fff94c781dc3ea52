/**
 * The server's side of every connection to one port, sampled from /proc/net/tcp (Linux): which
 * connections the server still holds, and when it let go of each.
 *
 * A connection is "held" while its server-side socket (local port = the server's port) still belongs
 * to a process (inode ≠ 0, in any state). When the server closes it, the kernel orphans the socket
 * (inode 0, FIN-WAIT or TIME-WAIT) or drops it: that is the moment the server cut it, whatever the
 * client has or has not noticed yet. (A slow reader with a tiny receive window may never read the
 * FIN that sits behind unsent data, so the attacker's own count of closed connections lags or never
 * moves; see docs/resilience.md.)
 *
 * Loopback only: peers are told apart by address (the attack comes from 127.0.0.1, the honest
 * client binds 127.0.0.2).
 */
import { readFileSync } from "node:fs";

export interface TrackedConnection {
  /** Peer "a.b.c.d:port". */
  peer: string;
  /** ms (performance.now()) of the first sample that saw it held by the server. */
  firstSeen: number;
  /** ms of the last sample that saw it held. */
  lastSeen: number;
  /** ms of the first sample that saw it released (orphaned or gone), or undefined while held. */
  releasedAt: number | undefined;
  /** Bytes in the server's send queue at the last sample that saw it held (tx_queue). */
  sendQueue: number;
  /**
   * ms of the last sample at which its send queue had grown (or of the first sample): after it, the server
   * had stopped handing the kernel more bytes, so a slow reader's stall, as a response deadline sees it,
   * began no later than this.
   */
  lastGrowth: number;
}

/** "0100007F" → "127.0.0.1" (/proc/net/tcp prints IPv4 addresses in host byte order: little-endian here). */
function ipv4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join(".");
}

/** Server-side sockets on `port` that a process still holds: peer → bytes in its send queue. */
export function heldPeers(
  port: number,
  table = readFileSync("/proc/net/tcp", "utf8"),
  listen?: { backlog: number },
): Map<string, number> {
  const held = new Map<string, number>();
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of table.split("\n")) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || !fields[1]!.endsWith(portHex)) continue;
    const state = fields[3];
    if (state === "0A") {
      // LISTEN: its rx_queue is the accept queue, connections the kernel has set up and the server not yet taken.
      if (listen) listen.backlog = Number.parseInt(fields[4]!.split(":")[1]!, 16);
      continue;
    }
    if (fields[9] === "0") continue; // orphaned: no process holds it any more
    const [remIp, remPort] = fields[2]!.split(":");
    held.set(`${ipv4(remIp!)}:${Number.parseInt(remPort!, 16)}`, Number.parseInt(fields[4]!.split(":")[0]!, 16));
  }
  return held;
}

export class ConnectionTracker {
  readonly connections = new Map<string, TrackedConnection>();
  /** Sample times (ms), in order. */
  readonly samples: number[] = [];
  /** The listening socket's accept queue at each sample: connections waiting for the server to accept them. */
  readonly backlog: number[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly port: number,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  sample(): void {
    const now = performance.now();
    const listen = { backlog: 0 };
    const held = heldPeers(this.port, undefined, listen);
    this.samples.push(now);
    this.backlog.push(listen.backlog);
    for (const [peer, sendQueue] of held) {
      const known = this.connections.get(peer);
      if (known === undefined || known.releasedAt !== undefined) {
        // New (or a port reused after a release: a new connection; the old record is kept under a suffix).
        if (known !== undefined) this.connections.set(`${peer}#${known.firstSeen.toFixed(0)}`, known);
        this.connections.set(peer, {
          peer,
          firstSeen: now,
          lastSeen: now,
          releasedAt: undefined,
          sendQueue,
          lastGrowth: now,
        });
      } else {
        known.lastSeen = now;
        if (sendQueue > known.sendQueue) known.lastGrowth = now;
        known.sendQueue = sendQueue;
      }
    }
    for (const connection of this.connections.values()) {
      if (connection.releasedAt === undefined && !held.has(connection.peer)) connection.releasedAt = now;
    }
  }

  /** Connections from one peer address (all ports). */
  from(address: string): TrackedConnection[] {
    return [...this.connections.values()].filter((c) => c.peer.startsWith(`${address}:`));
  }
}
