/**
 * Password hashes for the config file: PBKDF2-HMAC-SHA256 through WebCrypto, never plaintext.
 *
 * The stored form is `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`; `outpost passwd` prints one.
 *
 * @module
 */

const PREFIX = "pbkdf2-sha256";
/**
 * PBKDF2 iterations for new hashes: about 0.1 s on a Raspberry Pi 4, so a login costs little and guessing a lot.
 *
 * @example
 * ```ts
 * const hash = await hashPassword("secret", DEFAULT_ITERATIONS);
 * console.log(hash);
 * ```
 */
export const DEFAULT_ITERATIONS = 200_000;

function b64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function unb64(s: string): Uint8Array | null {
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/**
 * Hashes a password for the config file.
 *
 * @example
 * ```ts
 * const hash = await hashPassword("correct horse");
 * console.log(hash); // "pbkdf2-sha256$200000$...$..."
 * ```
 */
export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return `${PREFIX}$${iterations}$${b64(salt)}$${b64(await derive(password, salt, iterations))}`;
}

/**
 * Returns a problem with a stored hash's format, or null when it is usable.
 *
 * @example
 * ```ts
 * checkPasswordHash("secret"); // "must be a hash from `outpost passwd` (pbkdf2-sha256$...), not a plain password"
 * ```
 */
export function checkPasswordHash(stored: string): string | null {
  const parts = stored.split("$");
  if (parts.length !== 4 || parts[0] !== PREFIX) {
    return "must be a hash from `outpost passwd` (pbkdf2-sha256$...), not a plain password";
  }
  const iterations = Number(parts[1]);
  if (!Number.isInteger(iterations) || iterations < 1000 || iterations > 10_000_000) {
    return "has an iteration count outside 1000..10000000";
  }
  const salt = unb64(parts[2]);
  const hash = unb64(parts[3]);
  if (!salt || salt.length < 8 || !hash || hash.length !== 32) return "has a malformed salt or hash";
  return null;
}

/**
 * Checks a password against a stored hash in constant time; false for a malformed hash.
 *
 * @example
 * ```ts
 * const hash = await hashPassword("correct horse");
 * console.log(await verifyPassword("correct horse", hash)); // true
 * ```
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (checkPasswordHash(stored) !== null) return false;
  const [, it, saltB64, hashB64] = stored.split("$");
  const expected = unb64(hashB64)!;
  const actual = await derive(password, unb64(saltB64)!, Number(it));
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ actual[i];
  return diff === 0;
}
