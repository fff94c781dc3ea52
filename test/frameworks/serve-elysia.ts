/** Serves examples/elysia-bun.ts on Bun with the limits given as JSON in RECIPE_LIMITS; prints its port. */
import { createFetch, type RecipeLimits } from "../../examples/elysia-bun.ts";

const limits = JSON.parse(process.env.RECIPE_LIMITS ?? "") as RecipeLimits;
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createFetch(limits) });
console.log(`listening on ${server.port}`);
