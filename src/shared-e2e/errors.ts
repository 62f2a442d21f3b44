/**
 * The one error type of the end-to-end module. `code` is stable and meant for programs;
 * `message` is for humans and never contains key material.
 */
export type E2eErrorCode =
  /** A caller passed an argument of the wrong type or size (a 31-byte key, a non-byte chunk, ...). */
  | 'BAD_INPUT'
  /** The stream, wrapped key, sealed key or public key does not start with a known magic/version/layout. */
  | 'BAD_HEADER'
  /** A public key is malformed (bad length, point not on the curve, ML-KEM key fails the FIPS 203 check). */
  | 'BAD_KEY'
  /** The ciphertext ends before its final record: records were dropped at the end. */
  | 'TRUNCATED'
  /** A record failed authentication or bytes follow the final record: the ciphertext was altered. */
  | 'TAMPERED'
  /** The key does not fit: wrong file key / context, wrong recipient, wrong SecuPass (or an altered header). */
  | 'WRONG_KEY'
  /** Argon2id parameters below the floor (or above the ceiling) of docs/e2e-format.md §6. */
  | 'WEAK_PARAMS'
  /** More records than the format allows (2^32). */
  | 'TOO_LARGE';

export class E2eError extends Error {
  constructor(
    readonly code: E2eErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'E2eError';
  }
}
