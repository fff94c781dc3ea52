/** Command-line arguments of the demo, parsed the same way on every runtime (no runtime imports). */
export interface DemoArgs {
  runtime: "node" | "deno" | "bun" | "workers";
  port: number;
  configFile: string | undefined;
  /** Node only: serve HTTP/2 without TLS. */
  h2c: boolean;
  /** The same handler on the runtime's own server with its defaults: no stream-deadlines (the attack bench's baseline). */
  bare: boolean;
  /** Node only: a Hono app with the stream-deadlines/hono middleware, served by @hono/node-server. */
  hono: boolean;
}

const RUNTIMES = new Set(["node", "deno", "bun", "workers"]);

export function parseDemoArgs(argv: readonly string[], defaultPort = 8787): DemoArgs {
  const args: DemoArgs = {
    runtime: "node",
    port: defaultPort,
    configFile: undefined,
    h2c: false,
    bare: false,
    hono: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new TypeError(`demo: ${flag} needs a value`);
      return next;
    };
    if (flag === "--runtime") {
      const runtime = value();
      if (!RUNTIMES.has(runtime))
        throw new TypeError(`demo: --runtime must be node, deno, bun or workers, got "${runtime}"`);
      args.runtime = runtime as DemoArgs["runtime"];
    } else if (flag === "--port") {
      const port = Number(value());
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new RangeError(`demo: --port must be 0-65535, got ${argv[i]}`);
      args.port = port;
    } else if (flag === "--config") args.configFile = value();
    else if (flag === "--h2c") args.h2c = true;
    else if (flag === "--bare") args.bare = true;
    else if (flag === "--hono") args.hono = true;
    else
      throw new TypeError(
        `demo: unknown argument "${flag}" (expected --runtime, --port, --config, --h2c, --bare, --hono)`,
      );
  }
  return args;
}

export const TRY_THESE = (url: string) => `
Try:
  curl ${url}/
  curl -X POST --data-binary @/etc/services ${url}/upload
  curl -o /dev/null ${url}/download?bytes=104857600
  curl -N "${url}/events?every=2000&count=5"
  curl -i "${url}/slow?ms=10000"
`;
