/**
 * Setup of the unit project: a unit test opens no socket. Listening or connecting throws, so a test
 * that needs the network is caught here and belongs in the sockets project (vitest.config.ts).
 */
import net from "node:net";

function refuse(what: string): never {
  throw new Error(`unit tests open no sockets (${what}): move this test to the sockets project in vitest.config.ts`);
}

net.Server.prototype.listen = function listen() {
  refuse("listen");
} as typeof net.Server.prototype.listen;
net.Socket.prototype.connect = function connect() {
  refuse("connect");
} as typeof net.Socket.prototype.connect;
