/**
 * The manifest of a file's encryption (docs/e2e-format.md §3.0): what a header is bound to, so that an
 * upload can go on after an interruption by encrypting the file again under the same header — allowed only
 * for the same plaintext. Isomorphic: a browser `File` and Node's `fs.openAsBlob` are both Blobs.
 */
import { constantTimeEqual } from './encoding.js';
import { decryptBytes, encryptBytes, HEADER_SIZE } from './records.js';

/** Plaintext bytes per digest (the web app's upload piece, and the `pieceSize` both clients resume with). */
export const MANIFEST_PIECE = 8 * 1024 * 1024;
const MANIFEST_VERSION = 1;
const manifestContext = (context: string) => `${context}/manifest`;

/**
 * version ‖ header ‖ piece size ‖ count (u8, 57 bytes, u32, u32 big-endian) ‖ the SHA-256 of each
 * MANIFEST_PIECE of the plaintext, read piece by piece (constant memory).
 */
async function manifestOf(header: Uint8Array, file: Blob): Promise<Uint8Array<ArrayBuffer>> {
  const count = Math.ceil(file.size / MANIFEST_PIECE);
  const at = 1 + HEADER_SIZE + 8;
  const out = new Uint8Array(at + 32 * count);
  const view = new DataView(out.buffer);
  view.setUint8(0, MANIFEST_VERSION);
  out.set(header.subarray(0, HEADER_SIZE), 1);
  view.setUint32(1 + HEADER_SIZE, MANIFEST_PIECE);
  view.setUint32(1 + HEADER_SIZE + 4, count);
  for (let i = 0; i < count; i++) {
    const piece = await file.slice(i * MANIFEST_PIECE, Math.min(file.size, (i + 1) * MANIFEST_PIECE)).arrayBuffer();
    out.set(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', piece)), at + 32 * i);
  }
  return out;
}

/** The manifest of `file` encrypted under `header`, sealed under the file key (opaque to the server). */
export async function sealManifest(fileKey: Uint8Array, context: string, header: Uint8Array, file: Blob): Promise<Uint8Array> {
  return encryptBytes(fileKey, manifestContext(context), await manifestOf(header, file));
}

/**
 * Whether a sealed manifest names `header` and `file` gives its digests, over the whole file. False also
 * for a manifest that does not open under the key (at levels 3/4 the server cannot make one up).
 */
export async function manifestMatches(fileKey: Uint8Array, context: string, sealed: Uint8Array, header: Uint8Array, file: Blob): Promise<boolean> {
  let stored: Uint8Array;
  try {
    stored = await decryptBytes(fileKey, manifestContext(context), sealed);
  } catch {
    return false;
  }
  const mine = await manifestOf(header, file);
  return stored.length === mine.length && constantTimeEqual(stored, mine);
}
