/**
 * The bytes a ledger leaf commits to, and the canonical JSON they are written in.
 *
 * A leaf never contains the event's payload, only `payloadCommitment = SHA-256(salt || canonicalJson(payload))`
 * with a random 16-byte salt kept beside the payload. When retention deletes the payload and its salt, the
 * entry (and so the tree) still verifies, and the salt stops anyone from confirming a guessed payload
 * against the commitment.
 *
 * Entry encoding (version 1): the canonical JSON of
 *   { v: 1, seq, time, tenant?, actor, action, resource, outcome, payloadCommitment }
 * with `seq` the entry's 0-based leaf index, `time` an ISO 8601 UTC timestamp as Date#toISOString writes it,
 * and `payloadCommitment` standard base64 of the 32-byte hash. `decodeEntry` accepts only exactly these bytes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { pooledRandomBytes } from '../crypto/random.js';
import { ValidationError } from '../shared/errors.js';
import { leafHash } from './merkle.js';

// ---------------------------------------------------------------------------------------------------------
// Canonical JSON
// ---------------------------------------------------------------------------------------------------------

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Nesting deeper than this is refused, so a hostile payload cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

// A UTF-16 surrogate without its partner has no UTF-8 encoding.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export class CanonicalJsonError extends ValidationError {}

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const ANY_SURROGATE = /[\uD800-\uDFFF]/;

/** Where in the value we are, as `$.a[3].b`: only put together when an error needs it. */
type PathStack = (string | number)[];
const pathOf = (stack: PathStack) => stack.map((s, i) => (i === 0 ? String(s) : typeof s === 'number' ? `[${s}]` : `.${s}`)).join('');

function checkedString(value: string, stack: PathStack): string {
  // The full check (with look-behind) only when there is a surrogate at all: most strings have none.
  if (ANY_SURROGATE.test(value) && LONE_SURROGATE.test(value)) {
    const path = pathOf(stack);
    throw new CanonicalJsonError(`${path} contains a lone UTF-16 surrogate, which has no UTF-8 encoding`, { path });
  }
  return JSON.stringify(value);
}

function serialize(value: unknown, stack: PathStack, ancestors: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return checkedString(value, stack);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) {
        const path = pathOf(stack);
        throw new CanonicalJsonError(`${path} is ${String(value)}; JSON numbers must be finite`, { path });
      }
      // ECMAScript Number::toString, as RFC 8785 §3.2.2.3 prescribes; -0 becomes 0.
      return JSON.stringify(value);
    case 'object':
      break;
    default: {
      const path = pathOf(stack);
      throw new CanonicalJsonError(`${path} is a ${typeof value}, which JSON cannot represent; use null or omit it`, {
        path,
      });
    }
  }
  if (value === null) return 'null';
  const fail = (message: (path: string) => string): never => {
    const path = pathOf(stack);
    throw new CanonicalJsonError(message(path), { path });
  };
  if (ancestors.has(value)) fail((path) => `${path} refers back to itself (a cycle)`);
  if (ancestors.size >= MAX_JSON_DEPTH) fail((path) => `${path} is nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (Object.getOwnPropertySymbols(value).length > 0) fail((path) => `${path} has symbol keys, which JSON cannot represent`);
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      const items: string[] = [];
      for (let i = 0; i < value.length; i++) {
        stack.push(i);
        if (!(i in value)) fail((path) => `${path} is a hole in a sparse array`);
        items.push(serialize(value[i], stack, ancestors));
        stack.pop();
      }
      return `[${items.join(',')}]`;
    }
    if (!isPlainObject(value)) {
      const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      fail((path) => `${path} is a ${kind}; only plain objects, arrays and primitives are JSON`);
    }
    // RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names (the default string sort).
    const keys = Object.keys(value).sort();
    const members: string[] = [];
    for (const key of keys) {
      stack.push(key);
      const member: unknown = (value as Record<string, unknown>)[key];
      if (member === undefined) fail((path) => `${path} is undefined; omit the key or use null`);
      members.push(`${checkedString(key, stack)}:${serialize(member, stack, ancestors)}`);
      stack.pop();
    }
    return `{${members.join(',')}}`;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * Canonical JSON: members sorted by key, no whitespace, numbers as ECMAScript writes them (RFC 8785 / JCS
 * compatible). Refuses anything JSON would silently change: NaN and ±Infinity, undefined, functions, bigint,
 * symbols, Dates and other class instances, sparse arrays, cycles and lone surrogates.
 */
export function canonicalJson(value: unknown): string {
  return serialize(value, ['$'], new Set());
}

/** The UTF-8 bytes of `canonicalJson(value)`. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parses bytes that must already be canonical JSON: valid UTF-8, and exactly what `canonicalJsonBytes` writes. */
export function parseCanonicalJson(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new CanonicalJsonError('input is not valid UTF-8');
  }
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new CanonicalJsonError(`input is not JSON: ${(error as Error).message}`);
  }
  if (canonicalJson(value) !== text) {
    throw new CanonicalJsonError(
      'input is JSON but not canonical (sorted keys, no whitespace, shortest numbers, no duplicate keys)',
    );
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// Payload commitments
// ---------------------------------------------------------------------------------------------------------

export const PAYLOAD_SALT_BYTES = 16;
export const COMMITMENT_BYTES = 32;

export function newPayloadSalt(): Buffer {
  return pooledRandomBytes(PAYLOAD_SALT_BYTES);
}

/** SHA-256(salt || canonicalJson(payload)). The salt has a fixed length, so the concatenation is unambiguous. */
export function payloadCommitment(payload: unknown, salt: Uint8Array): Buffer {
  if (salt.length !== PAYLOAD_SALT_BYTES) {
    throw new ValidationError(`payload salt must be ${PAYLOAD_SALT_BYTES} bytes, got ${salt.length}`);
  }
  return createHash('sha256').update(salt).update(canonicalJsonBytes(payload)).digest();
}

/**
 * A fresh salt and the commitment to `payload` under it, with the canonical text that was committed to:
 * store the salt and that text beside the entry.
 */
export function commitPayload(payload: unknown): { salt: Buffer; commitment: Buffer; canonical: string } {
  const salt = newPayloadSalt();
  const canonical = canonicalJson(payload);
  return { salt, canonical, commitment: createHash('sha256').update(salt).update(canonical, 'utf8').digest() };
}

export function verifyPayloadCommitment(payload: unknown, salt: Uint8Array, commitment: Uint8Array): boolean {
  if (salt.length !== PAYLOAD_SALT_BYTES || commitment.length !== COMMITMENT_BYTES) return false;
  let actual: Buffer;
  try {
    actual = payloadCommitment(payload, salt);
  } catch {
    return false;
  }
  return timingSafeEqual(actual, commitment);
}

// ---------------------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------------------

export const ENTRY_VERSION = 1;
export const ENTRY_OUTCOMES = ['success', 'failure', 'denied'] as const;
export type EntryOutcome = (typeof ENTRY_OUTCOMES)[number];

/** Longest actor, action, resource or tenant, in UTF-16 code units. */
export const MAX_ENTRY_FIELD_LENGTH = 512;

export interface LedgerEntry {
  /** 0-based leaf index of this entry in its tree. */
  readonly seq: number;
  /** ISO 8601 UTC, exactly as Date#toISOString writes it (e.g. 2025-01-31T12:00:00.000Z). */
  readonly time: string;
  /** Absent in the platform tree. */
  readonly tenant?: string;
  /** Who acted: an account id, never a person's name. */
  readonly actor: string;
  readonly action: string;
  /** What was acted on: a record id or blind index, never personal data in clear text. */
  readonly resource: string;
  readonly outcome: EntryOutcome;
  /** SHA-256(salt || canonicalJson(payload)), 32 bytes. */
  readonly payloadCommitment: Uint8Array;
}

export class EntryFormatError extends ValidationError {}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** True for exactly the strings Date#toISOString produces for years 0000–9999. */
export function isCanonicalIsoTime(value: unknown): value is string {
  if (typeof value !== 'string' || !ISO_UTC.test(value)) return false;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && new Date(ms).toISOString() === value;
}

function requireText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ENTRY_FIELD_LENGTH) {
    throw new EntryFormatError(`entry ${field} must be a string of 1 to ${MAX_ENTRY_FIELD_LENGTH} characters`, {
      field,
    });
  }
  if (LONE_SURROGATE.test(value)) {
    throw new EntryFormatError(`entry ${field} contains a lone UTF-16 surrogate`, { field });
  }
  return value;
}

function validateEntry(entry: LedgerEntry): void {
  if (!Number.isSafeInteger(entry.seq) || entry.seq < 0) {
    throw new EntryFormatError('entry seq must be a non-negative safe integer', { field: 'seq' });
  }
  if (!isCanonicalIsoTime(entry.time)) {
    throw new EntryFormatError('entry time must be ISO 8601 UTC as Date#toISOString writes it, e.g. 2025-01-31T12:00:00.000Z', {
      field: 'time',
    });
  }
  if (entry.tenant !== undefined) requireText(entry.tenant, 'tenant');
  requireText(entry.actor, 'actor');
  requireText(entry.action, 'action');
  requireText(entry.resource, 'resource');
  if (!(ENTRY_OUTCOMES as readonly unknown[]).includes(entry.outcome)) {
    throw new EntryFormatError(`entry outcome must be one of ${ENTRY_OUTCOMES.join(', ')}`, { field: 'outcome' });
  }
  if (!(entry.payloadCommitment instanceof Uint8Array) || entry.payloadCommitment.length !== COMMITMENT_BYTES) {
    throw new EntryFormatError(`entry payloadCommitment must be ${COMMITMENT_BYTES} bytes`, {
      field: 'payloadCommitment',
    });
  }
}

/** The leaf bytes of an entry (canonical JSON, UTF-8). */
export function encodeEntry(entry: LedgerEntry): Buffer {
  validateEntry(entry);
  return canonicalJsonBytes({
    v: ENTRY_VERSION,
    seq: entry.seq,
    time: entry.time,
    ...(entry.tenant === undefined ? {} : { tenant: entry.tenant }),
    actor: entry.actor,
    action: entry.action,
    resource: entry.resource,
    outcome: entry.outcome,
    payloadCommitment: Buffer.from(entry.payloadCommitment).toString('base64'),
  });
}

const REQUIRED_KEYS = ['action', 'actor', 'outcome', 'payloadCommitment', 'resource', 'seq', 'time', 'v'];
const OPTIONAL_KEYS = ['tenant'];
const BASE64_32_BYTES = /^[A-Za-z0-9+/]{43}=$/;

/** Strict inverse of `encodeEntry`: any byte that `encodeEntry` would not have written is refused. */
export function decodeEntry(bytes: Uint8Array): LedgerEntry {
  // Parse, check the fields, then demand that the bytes are exactly what `encodeEntry` writes for them.
  // (Cheaper than the generic canonical check, which matters when `verify` decodes a million entries.)
  let text: string;
  let json: JsonValue;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new EntryFormatError('entry is not canonical JSON: input is not valid UTF-8');
  }
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new EntryFormatError(`entry is not canonical JSON: input is not JSON: ${(error as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new EntryFormatError('entry must be a JSON object');
  }
  const keys = Object.keys(json);
  const missing = REQUIRED_KEYS.filter((k) => !keys.includes(k));
  const unknown = keys.filter((k) => !REQUIRED_KEYS.includes(k) && !OPTIONAL_KEYS.includes(k));
  if (missing.length > 0) throw new EntryFormatError(`entry is missing ${missing.join(', ')}`, { missing });
  if (unknown.length > 0) throw new EntryFormatError(`entry has unknown fields ${unknown.join(', ')}`, { unknown });
  if (json.v !== ENTRY_VERSION) {
    throw new EntryFormatError(`entry version ${JSON.stringify(json.v)} is not supported (expected ${ENTRY_VERSION})`);
  }
  const commitment = json.payloadCommitment;
  if (typeof commitment !== 'string' || !BASE64_32_BYTES.test(commitment)) {
    throw new EntryFormatError('entry payloadCommitment must be base64 of 32 bytes', { field: 'payloadCommitment' });
  }
  const payloadCommitmentBytes = Buffer.from(commitment, 'base64');
  if (payloadCommitmentBytes.toString('base64') !== commitment) {
    throw new EntryFormatError('entry payloadCommitment is not canonical base64', { field: 'payloadCommitment' });
  }
  const entry = {
    seq: json.seq,
    time: json.time,
    ...(json.tenant === undefined ? {} : { tenant: json.tenant }),
    actor: json.actor,
    action: json.action,
    resource: json.resource,
    outcome: json.outcome,
    payloadCommitment: payloadCommitmentBytes,
  } as LedgerEntry;
  validateEntry(entry);
  const strings = [entry.action, entry.actor, entry.outcome, entry.resource, entry.time, ...(entry.tenant === undefined ? [] : [entry.tenant])];
  if (strings.some((v) => ANY_SURROGATE.test(v) && LONE_SURROGATE.test(v))) {
    throw new EntryFormatError('entry is not canonical JSON: a field contains a lone UTF-16 surrogate');
  }
  // Members in RFC 8785 order (sorted names), no whitespace: the only form `encodeEntry` writes.
  const canonical =
    `{"action":${JSON.stringify(entry.action)},"actor":${JSON.stringify(entry.actor)},"outcome":${JSON.stringify(entry.outcome)},` +
    `"payloadCommitment":${JSON.stringify(commitment)},"resource":${JSON.stringify(entry.resource)},"seq":${JSON.stringify(entry.seq)},` +
    `${entry.tenant === undefined ? '' : `"tenant":${JSON.stringify(entry.tenant)},`}"time":${JSON.stringify(entry.time)},"v":${JSON.stringify(ENTRY_VERSION)}}`;
  if (canonical !== text) {
    throw new EntryFormatError('entry is not canonical JSON: input is JSON but not canonical (sorted keys, no whitespace, shortest numbers, no duplicate keys)');
  }
  return entry;
}

/** The RFC 9162 leaf hash of an entry. */
export function entryLeafHash(entry: LedgerEntry): Buffer {
  return leafHash(encodeEntry(entry));
}
