/**
 * Checks an RFC 9162 inclusion proof in the browser with WebCrypto: leaf = SHA-256(0x00 ‖ entry),
 * node = SHA-256(0x01 ‖ left ‖ right), against the root hash of a signed C2SP checkpoint.
 */
const sha256 = async (...parts: Uint8Array[]): Promise<Uint8Array> => {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', joined));
};

export const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
export const fromBase64 = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
export const toHex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** The root hash of a C2SP checkpoint text (third line, base64). */
export function checkpointRoot(checkpoint: string): { treeSize: number; root: Uint8Array } {
  const [, size, root] = checkpoint.split('\n');
  return { treeSize: Number(size), root: fromBase64(root ?? '') };
}

export async function verifyInclusion(entryBase64: string, index: number, treeSize: number, proofBase64: string[], root: Uint8Array): Promise<boolean> {
  if (index >= treeSize) return false;
  let hash = await sha256(new Uint8Array([0]), fromBase64(entryBase64));
  let fn = index;
  let sn = treeSize - 1;
  for (const p of proofBase64.map(fromBase64)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      hash = await sha256(new Uint8Array([1]), p, hash);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      hash = await sha256(new Uint8Array([1]), hash, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && toHex(hash) === toHex(root);
}
