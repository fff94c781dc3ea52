/**
 * The bytes every transfer of the links harness carries: 64 KiB chunks of a xorshift32 stream seeded by the chunk's
 * index, so that a lost, repeated or reordered chunk changes the SHA-256 (a short period would hide it). WHATWG and
 * ECMAScript only: the server imports it on every runtime.
 */
export const CHUNK = 64 * 1024;

/** Chunk `index` of the pattern, `size` bytes (at most CHUNK). */
export function patternChunk(index: number, size = CHUNK): Uint8Array {
  const words = new Uint32Array(CHUNK / 4);
  let x = (Math.imul(index + 1, 0x9e3779b1) ^ 0x5bd1e995) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return new Uint8Array(words.buffer, 0, size);
}

/** The pattern's first `total` bytes, chunk by chunk. */
export function* patternChunks(total: number): Generator<Uint8Array> {
  for (let index = 0, sent = 0; sent < total; index++) {
    const size = Math.min(CHUNK, total - sent);
    yield patternChunk(index, size);
    sent += size;
  }
}

export const hex = (bytes: ArrayBuffer | Uint8Array) =>
  Array.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
