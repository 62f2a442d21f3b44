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

/**
 * An ECDSA signature as ASN.1 DER (SEQUENCE { r INTEGER, s INTEGER }), as the signed note carries it, in
 * the 64-byte r ‖ s form WebCrypto verifies (P-256); undefined when it is not exactly that.
 */
function derSignatureToRaw(der: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) return undefined;
  const raw = new Uint8Array(64);
  let at = 2;
  for (const offset of [0, 32]) {
    const length = der[at + 1] ?? 0;
    if (der[at] !== 0x02 || length === 0 || at + 2 + length > der.length) return undefined;
    let integer = der.subarray(at + 2, at + 2 + length);
    at += 2 + length;
    while (integer.length > 32 && integer[0] === 0) integer = integer.subarray(1);
    if (integer.length > 32) return undefined;
    raw.set(integer, offset + 32 - integer.length);
  }
  return at === der.length ? raw : undefined;
}

/**
 * Checks a C2SP checkpoint's signature in the browser (c2sp.org/signed-note, type 0x02 as Tresor writes
 * it): a signature line named by the origin, whose key id is SHA-256(SPKI DER)[:4] of `publicKeyPem`, with an
 * ECDSA P-256 / SHA-256 signature over the note text (everything before the empty line, newline included).
 */
export async function verifyCheckpointSignature(checkpoint: string, publicKeyPem: string): Promise<boolean> {
  const separator = checkpoint.lastIndexOf('\n\n');
  if (separator < 0 || !checkpoint.endsWith('\n')) return false;
  const note = checkpoint.slice(0, separator + 1);
  const origin = note.split('\n')[0] ?? '';
  try {
    const spki = new Uint8Array(fromBase64(publicKeyPem.replace(/-----(BEGIN|END) PUBLIC KEY-----|\s/g, '')));
    const keyId = toHex((await sha256(spki)).subarray(0, 4));
    const key = await crypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    for (const line of checkpoint.slice(separator + 2, -1).split('\n')) {
      const match = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(line);
      if (!match || match[1] !== origin) continue;
      const bytes = fromBase64(match[2]!);
      if (bytes.length < 5 || toHex(bytes.subarray(0, 4)) !== keyId) continue;
      const raw = derSignatureToRaw(bytes.subarray(4));
      if (raw && (await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, new TextEncoder().encode(note)))) return true;
    }
  } catch {
    return false; // not a P-256 public key, or not base64
  }
  return false;
}
