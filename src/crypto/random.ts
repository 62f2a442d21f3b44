import { randomBytes, timingSafeEqual, createHash, randomUUID } from 'node:crypto';

/** 256-bit random token, base64url. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * Small random values (nonces, salts) from a pool the CSPRNG fills 4 KiB at a time: one `randomBytes` call
 * costs about 5 µs here whatever its size, more than the AES-GCM of a field or the hashing of a ledger entry.
 * Each value is copied out of the pool, and no byte is handed out twice.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = POOL_BYTES;
export function pooledRandomBytes(bytes: number): Buffer {
  if (!(Number.isInteger(bytes) && bytes > 0 && bytes <= 256)) throw new RangeError('pooledRandomBytes is for 1 to 256 bytes');
  if (poolOffset + bytes > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + bytes));
  poolOffset += bytes;
  return out;
}

export function newId(): string {
  return randomUUID();
}

/** A human-typable one-time password: 24 characters from an unambiguous alphabet (≈ 124 bits). */
export function randomPassword(length = 24): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const out: string[] = [];
  // Rejection sampling keeps the distribution uniform.
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 256 - (256 % alphabet.length) && out.length < length) out.push(alphabet[byte % alphabet.length]!);
    }
  }
  return out.join('');
}

export function sha256Hex(value: string | Uint8Array): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Constant-time comparison of two strings of possibly different length. */
export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}
