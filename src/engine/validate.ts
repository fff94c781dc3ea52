/**
 * Every argument error of the library is built here, so each one reads the same way: where the
 * call was made, the field, what it must be, and what it got. Bad input throws at once, so a typo
 * never turns into "no limit" silently.
 */

type ErrorClass = new (message: string) => Error;

/** How a value is named in a message: "null", "an array", or its typeof. */
export function kind(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

/** A value's typeof, with null named "null". */
export function typeOf(value: unknown): string {
  return value === null ? "null" : typeof value;
}

/** A handler (or any callback) must be a function: `${where}: ${field} must be a function, got ${typeof}`. */
export function checkFunction(where: string, value: unknown, field = "handler"): void {
  if (typeof value !== "function") throw fieldError(where, field, "a function", typeof value);
}

/** `a, b, c or d`. */
export function listOr(words: readonly string[]): string {
  return words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}`;
}

/** Throws `${where}${sep}${message}` (a TypeError unless told otherwise). */
export function fail(where: string, message: string, sep = ": ", Type: ErrorClass = TypeError): never {
  throw new Type(where + sep + message);
}

/** `${where}: ${field} must be ${expected}, got ${got}`. */
export function fieldError(
  where: string,
  field: string,
  expected: string,
  got: unknown,
  Type: ErrorClass = TypeError,
): Error {
  return new Type(`${where}: ${field} must be ${expected}, got ${got}`);
}

/** Refuses anything but a plain object (no null, no array): `${where}: ${what}, got ${kind}`. */
export function checkObject(
  where: string,
  value: unknown,
  what = "options must be an object",
  describe: (value: unknown) => string = kind,
): asserts value is object {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    fail(where, `${what}, got ${describe(value)}`);
}

/** Refuses keys not in `keys`: `${where}${sep}unknown ${what} "${key}" (expected ${expected})`. */
export function checkKeys(
  where: string,
  value: object,
  keys: readonly string[],
  expected = keys.join(", "),
  what = "option",
  sep = ": ",
): void {
  for (const key of Object.keys(value))
    if (!keys.includes(key)) fail(where, `unknown ${what} "${key}" (expected ${expected})`, sep);
}

/** An options object: an object, with known keys only. */
export function checkOptions(where: string, options: unknown, keys: readonly string[], expected?: string): void {
  checkObject(where, options);
  checkKeys(where, options, keys, expected);
}
