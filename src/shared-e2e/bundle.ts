import { E2eError } from './errors.js';

/**
 * The level-4 bundle (docs/e2e-format.md §3.2): the message and the file names, in the order of the
 * transfer's files, as UTF-8 JSON, encrypted like a file. The server holds only its ciphertext.
 */
export interface Bundle {
  message: string;
  /** One per file of the transfer, in its order; `null` where the bundle held no usable name. */
  names: (string | null)[];
}

export function encodeBundle(message: string, names: readonly string[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ message, names }));
}

/**
 * Reads a decrypted bundle. Lenient in what a sender's client may have left out (no message: empty; a name
 * that is no string: null), strict in the form: anything but a JSON object is BAD_INPUT.
 */
export function decodeBundle(plain: Uint8Array): Bundle {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain));
  } catch {
    throw new E2eError('BAD_INPUT', 'the bundle is not UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new E2eError('BAD_INPUT', 'the bundle is not a JSON object');
  const { message, names } = parsed as { message?: unknown; names?: unknown };
  return {
    message: typeof message === 'string' ? message : '',
    names: Array.isArray(names) ? names.map((n) => (typeof n === 'string' ? n : null)) : [],
  };
}
