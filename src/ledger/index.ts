/**
 * The ledger core: RFC 9162 Merkle trees, C2SP signed checkpoints and the leaf entry format. Pure and
 * storage-independent; the repository layer persists leaves, subtree nodes and checkpoints.
 */
export {
  HASH_SIZE,
  leafHash,
  nodeHash,
  emptyRootHash,
  rootHash,
  inclusionProof,
  consistencyProof,
  verifyInclusion,
  verifyConsistency,
  rangeNodes,
  rootHashPlan,
  inclusionProofPlan,
  consistencyProofPlan,
  foldSubtrees,
  assembleProof,
  MerkleAccumulator,
  MerkleTree,
  auditLeafHashes,
  type NodeId,
  type ProofPlan,
  type ExpectedRoot,
  type AuditFinding,
  type AuditResult,
} from './merkle.js';
export {
  ECDSA_SIGNATURE_TYPE,
  MAX_CHECKPOINT_SIGNATURES,
  MAX_CHECKPOINT_BYTES,
  CheckpointFormatError,
  generateLedgerKeyPair,
  ledgerKeyId,
  formatVerifierKey,
  checkpointBody,
  createCheckpoint,
  formatCheckpoint,
  parseCheckpoint,
  verifyCheckpointSignature,
  type NoteSignature,
  type CheckpointBody,
  type Checkpoint,
  type CreateCheckpointInput,
  type LedgerKeyPair,
} from './checkpoint.js';
export {
  MAX_JSON_DEPTH,
  PAYLOAD_SALT_BYTES,
  COMMITMENT_BYTES,
  ENTRY_VERSION,
  ENTRY_OUTCOMES,
  MAX_ENTRY_FIELD_LENGTH,
  CanonicalJsonError,
  EntryFormatError,
  canonicalJson,
  canonicalJsonBytes,
  parseCanonicalJson,
  newPayloadSalt,
  payloadCommitment,
  commitPayload,
  verifyPayloadCommitment,
  isCanonicalIsoTime,
  encodeEntry,
  decodeEntry,
  entryLeafHash,
  type JsonValue,
  type EntryOutcome,
  type LedgerEntry,
} from './entry.js';
/** The standalone verifier customers copy; namespaced because its names mirror the ones above. */
export * as standaloneVerifier from './verifier.js';
export { createLedger, type Ledger, type LedgerEvent, type VerifyReport, type VerifyFinding, type VerifyThreads, type StoredCheckpoint, type EntryWithProof } from './ledger.service.js';
export { createLedgers, ledgerActor, type Ledgers } from './ledgers.js';
export { createBillingMeter, billingReport, toCsv, BILLING_RETENTION_DAYS, type BillingTotals } from './billing.js';
export type { LedgerFilter, ExportedEntry } from './ledger.service.js';
export { EXPORT_CSV_COLUMNS, exportCsvRow } from './ledger.routes.js';
export { currentEventSource, withEventSource } from './event-source.js';
