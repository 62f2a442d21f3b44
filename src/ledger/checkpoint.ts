/**
 * Signed checkpoints in the C2SP tlog-checkpoint format (c2sp.org/tlog-checkpoint), a C2SP signed note
 * (c2sp.org/signed-note):
 *
 *   <origin>\n
 *   <tree size, decimal>\n
 *   <root hash, base64>\n
 *   time <ISO 8601 UTC, as Date#toISOString>\n      (one extension line)
 *   \n
 *   — <key name> <base64(4-byte key id || signature)>\n   (one or more)
 *
 * Signature algorithm: signed-note signature type 0x02, "ECDSA signatures as implemented by
 * github.com/transparency-dev/witness", with NIST P-256:
 * - the signature is ECDSA P-256 over SHA-256(note text), ASN.1 DER encoded (Node's default `dsaEncoding: 'der'`,
 *   Go's ecdsa.SignASN1);
 * - the key id is the first four bytes, big-endian, of SHA-256(DER SubjectPublicKeyInfo). The key name is NOT
 *   hashed in for this type (unlike the generic recommendation and Ed25519's 0x01): the signed-note spec says
 *   so for 0x02, and transparency-dev's verifier computes it that way, so witnesses built on it accept our keys.
 * - the verifier key string (`formatVerifierKey`) is `<name>+<key id, 8 hex>+base64(0x02 || SPKI DER)`, the
 *   form transparency-dev's note.NewECDSAVerifier reads.
 *
 * The time extension line is covered by our signature; the C2SP format discourages extension lines because log
 * monitors cannot audit them, so nothing should depend on the time beyond "the log claimed it at this time".
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { ValidationError } from '../shared/errors.js';
import { HASH_SIZE } from './merkle.js';

/** c2sp.org/signed-note signature type identifier for ECDSA (transparency-dev/witness). */
export const ECDSA_SIGNATURE_TYPE = 0x02;
/** Verifiers must accept at least 16 signatures (c2sp.org/signed-note); we refuse notes with more than this. */
export const MAX_CHECKPOINT_SIGNATURES = 64;
export const MAX_CHECKPOINT_BYTES = 64 * 1024;

export interface NoteSignature {
  readonly keyName: string;
  /** uint32, big-endian first four bytes of the signature line's base64 payload. */
  readonly keyId: number;
  readonly signature: Buffer;
}

export interface CheckpointBody {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  readonly time: Date;
}

export interface Checkpoint extends CheckpointBody {
  readonly signatures: readonly NoteSignature[];
}

export interface LedgerKeyPair {
  /** SubjectPublicKeyInfo, PEM. */
  readonly publicKeyPem: string;
  /** PKCS#8, PEM, unencrypted: wrap it with the key ring before storing it. */
  readonly privateKeyPem: string;
}

export class CheckpointFormatError extends ValidationError {}

export function generateLedgerKeyPair(): LedgerKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKeyPem: publicKey, privateKeyPem: privateKey };
}

function requireP256(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ValidationError(`${what} must be an ECDSA P-256 key`);
  }
  return key;
}

function publicKeyObject(publicKeyPem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(publicKeyPem);
  } catch {
    throw new ValidationError('ledger public key is not a PEM public key');
  }
  return requireP256(key, 'ledger public key');
}

function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function keyIdOf(key: KeyObject): number {
  return createHash('sha256').update(spkiDer(key)).digest().readUInt32BE(0);
}

/** Key id of signature type 0x02: SHA-256(SPKI DER)[:4], big-endian. */
export function ledgerKeyId(publicKeyPem: string): number {
  return keyIdOf(publicKeyObject(publicKeyPem));
}

/** `<name>+<key id hex>+base64(0x02 || SPKI DER)`: the key string a witness or monitor is configured with. */
export function formatVerifierKey(keyName: string, publicKeyPem: string): string {
  assertKeyName(keyName);
  const key = publicKeyObject(publicKeyPem);
  const keyId = keyIdOf(key).toString(16).padStart(8, '0');
  return `${keyName}+${keyId}+${Buffer.concat([Buffer.of(ECDSA_SIGNATURE_TYPE), spkiDer(key)]).toString('base64')}`;
}

// ---------------------------------------------------------------------------------------------------------
// Field rules shared by formatting and parsing
// ---------------------------------------------------------------------------------------------------------

// c2sp.org/signed-note: key names are non-empty without Unicode spaces or '+'. We hold origins to the same rule
// (the spec's SHOULD), since the key name defaults to the origin.
const NAME = /^[^\s+]+$/u;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const TIME_PREFIX = 'time ';
const SIGNATURE_PREFIX = '\u2014 '; // em dash, space
const CONTROL = /[\u0000-\u0009\u000B-\u001F]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function assertKeyName(name: string): void {
  if (typeof name !== 'string' || !NAME.test(name) || LONE_SURROGATE.test(name)) {
    throw new ValidationError(`key name ${JSON.stringify(name)} must be non-empty, without spaces or '+'`);
  }
}

function validateBody(body: CheckpointBody): void {
  if (typeof body.origin !== 'string' || !NAME.test(body.origin) || LONE_SURROGATE.test(body.origin)) {
    throw new ValidationError(`checkpoint origin ${JSON.stringify(body.origin)} must be non-empty, without spaces or '+'`);
  }
  if (!Number.isSafeInteger(body.treeSize) || body.treeSize < 0) {
    throw new ValidationError('checkpoint treeSize must be a non-negative safe integer');
  }
  if (!(body.rootHash instanceof Uint8Array) || body.rootHash.length !== HASH_SIZE) {
    throw new ValidationError(`checkpoint rootHash must be ${HASH_SIZE} bytes`);
  }
  if (!(body.time instanceof Date) || !ISO_UTC.test(isoOrEmpty(body.time))) {
    throw new ValidationError('checkpoint time must be a valid Date in the years 0000 to 9999');
  }
}

function isoOrEmpty(date: Date): string {
  return Number.isFinite(date.getTime()) ? date.toISOString() : '';
}

/** The signed note text: origin, size, root, time line, each ending in a newline. */
export function checkpointBody(body: CheckpointBody): string {
  validateBody(body);
  return (
    `${body.origin}\n${body.treeSize}\n${Buffer.from(body.rootHash).toString('base64')}\n` +
    `${TIME_PREFIX}${body.time.toISOString()}\n`
  );
}

// ---------------------------------------------------------------------------------------------------------
// Create, format, parse
// ---------------------------------------------------------------------------------------------------------

export interface CreateCheckpointInput extends CheckpointBody {
  readonly privateKeyPem: string;
  /** Defaults to the origin, as c2sp.org/tlog-checkpoint recommends. */
  readonly keyName?: string;
}

export function createCheckpoint(input: CreateCheckpointInput): Checkpoint {
  validateBody(input);
  const body: CheckpointBody = {
    origin: input.origin,
    treeSize: input.treeSize,
    rootHash: Buffer.from(input.rootHash),
    time: new Date(input.time.getTime()),
  };
  const text = checkpointBody(body);
  const keyName = input.keyName ?? input.origin;
  assertKeyName(keyName);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(input.privateKeyPem);
  } catch {
    throw new ValidationError('ledger private key is not a PEM private key');
  }
  requireP256(privateKey, 'ledger private key');
  const signature = sign('sha256', Buffer.from(text, 'utf8'), { key: privateKey, dsaEncoding: 'der' });
  return { ...body, signatures: [{ keyName, keyId: keyIdOf(createPublicKey(privateKey)), signature }] };
}

export function formatCheckpoint(checkpoint: Checkpoint): string {
  if (checkpoint.signatures.length === 0) {
    throw new ValidationError('a checkpoint needs at least one signature before it can be written out');
  }
  const lines = checkpoint.signatures.map((s) => {
    assertKeyName(s.keyName);
    if (!Number.isInteger(s.keyId) || s.keyId < 0 || s.keyId > 0xffffffff) {
      throw new ValidationError('signature keyId must be a uint32');
    }
    if (s.signature.length === 0) throw new ValidationError('signature must not be empty');
    const keyId = Buffer.alloc(4);
    keyId.writeUInt32BE(s.keyId);
    return `${SIGNATURE_PREFIX}${s.keyName} ${Buffer.concat([keyId, s.signature]).toString('base64')}\n`;
  });
  return `${checkpointBody(checkpoint)}\n${lines.join('')}`;
}

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new CheckpointFormatError(`checkpoint: ${message}`, details);
}

function decodeCanonicalBase64(value: string, what: string): Buffer {
  if (!BASE64.test(value) || value.length % 4 !== 0) fail(`${what} is not standard padded base64`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) fail(`${what} is not canonical base64`);
  return bytes;
}

/**
 * Strict parser: refuses anything `formatCheckpoint` would not write, with a message naming the problem.
 * Parsing says nothing about authenticity; call `verifyCheckpointSignature`.
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (typeof text !== 'string') fail('input must be a string');
  if (Buffer.byteLength(text, 'utf8') > MAX_CHECKPOINT_BYTES) fail(`larger than ${MAX_CHECKPOINT_BYTES} bytes`);
  if (LONE_SURROGATE.test(text)) fail('not valid UTF-8 (lone surrogate)');
  const control = CONTROL.exec(text);
  if (control) {
    fail(`contains control character U+${control[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} (only newline is allowed; CRLF line endings are not)`);
  }
  if (!text.endsWith('\n')) fail('must end with a newline');
  // c2sp.org/signed-note: the text is separated from the signatures by the last empty line.
  const separator = text.lastIndexOf('\n\n');
  if (separator < 0) fail('has no empty line between the note text and the signatures');
  if (separator + 2 === text.length) fail('has no signature lines');
  const bodyLines = text.slice(0, separator).split('\n');
  const signatureLines = text.slice(separator + 2, -1).split('\n');

  if (bodyLines.length < 3) fail('note text needs origin, tree size and root hash lines');
  const [origin, sizeLine, rootLine, ...extensions] = bodyLines as [string, string, string, ...string[]];
  if (bodyLines.some((line) => line.length === 0)) fail('note text contains an empty line');
  if (!NAME.test(origin)) fail('origin must be non-empty, without spaces or "+"');
  if (!DECIMAL.test(sizeLine)) fail('tree size must be a decimal number without leading zeros or sign');
  const treeSize = Number(sizeLine);
  if (!Number.isSafeInteger(treeSize)) fail(`tree size ${sizeLine} is larger than ${Number.MAX_SAFE_INTEGER}`);
  const rootHash = decodeCanonicalBase64(rootLine, 'root hash');
  if (rootHash.length !== HASH_SIZE) fail(`root hash is ${rootHash.length} bytes, expected ${HASH_SIZE}`);

  const timeLines = extensions.filter((line) => line.startsWith(TIME_PREFIX));
  const unknown = extensions.filter((line) => !line.startsWith(TIME_PREFIX));
  if (unknown.length > 0) fail(`unknown extension line ${JSON.stringify(unknown[0])}`);
  if (timeLines.length !== 1) fail(`needs exactly one "time" line, found ${timeLines.length}`);
  const timeText = timeLines[0]!.slice(TIME_PREFIX.length);
  const timeMs = Date.parse(timeText);
  if (!ISO_UTC.test(timeText) || !Number.isFinite(timeMs) || new Date(timeMs).toISOString() !== timeText) {
    fail('time must be ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z');
  }

  if (signatureLines.length > MAX_CHECKPOINT_SIGNATURES) fail(`more than ${MAX_CHECKPOINT_SIGNATURES} signatures`);
  const signatures = signatureLines.map((line, i): NoteSignature => {
    if (!line.startsWith(SIGNATURE_PREFIX)) fail(`signature line ${i + 1} must start with an em dash and a space`);
    const parts = line.slice(SIGNATURE_PREFIX.length).split(' ');
    if (parts.length !== 2) fail(`signature line ${i + 1} must be "— <key name> <base64>"`);
    const [keyName, encoded] = parts as [string, string];
    if (!NAME.test(keyName)) fail(`signature line ${i + 1}: key name must be non-empty, without spaces or "+"`);
    const bytes = decodeCanonicalBase64(encoded, `signature line ${i + 1}`);
    if (bytes.length < 5) fail(`signature line ${i + 1} is too short for a key id and a signature`);
    return { keyName, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(4) };
  });

  return { origin, treeSize, rootHash, time: new Date(timeMs), signatures };
}

/**
 * True when at least one signature is by this key (key name and key id both match, c2sp.org/signed-note) and
 * every such signature verifies over the note text. Signatures by other keys are ignored, as the spec requires.
 * `checkpoint` may be the text; the signed bytes are always rebuilt from the fields, so a field changed after
 * parsing is caught. Throws only for an unusable public key.
 */
export function verifyCheckpointSignature(
  checkpoint: Checkpoint | string,
  publicKeyPem: string,
  options: { keyName?: string } = {},
): boolean {
  const key = publicKeyObject(publicKeyPem);
  let parsed: Checkpoint;
  let signed: Buffer;
  try {
    parsed = typeof checkpoint === 'string' ? parseCheckpoint(checkpoint) : checkpoint;
    signed = Buffer.from(checkpointBody(parsed), 'utf8');
  } catch {
    return false;
  }
  const keyName = options.keyName ?? parsed.origin;
  const keyId = keyIdOf(key);
  const ours = parsed.signatures.filter((s) => s.keyName === keyName && s.keyId === keyId);
  if (ours.length === 0) return false;
  return ours.every((s) => {
    try {
      return verify('sha256', signed, { key, dsaEncoding: 'der' }, s.signature);
    } catch {
      return false;
    }
  });
}
