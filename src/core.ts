import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import type { TresorConfig } from './config/index.js';
import { loadOrCreateMasterKey } from './crypto/master-key.js';
import { localCipherService, remoteCipherService, type CipherService } from './crypto/cipher-service.js';
import {
  createIdentityService,
  createLoginThrottle,
  createMemoryAttemptStore,
  createPasswordHasher,
  createRedisAttemptStore,
  type Clock,
  type IdentityService,
} from './identity/index.js';
import { createBlobFolders, createPlatformRepo, createPlatformService, type PlatformService } from './platform/index.js';
import { createBillingMeter, createLedgers, type Ledgers } from './ledger/index.js';
import { ledgerKeyAad } from './ledger/ledger.service.js';
import { openStorage, type Storage } from './storage/index.js';
import { createMailer, createMailQueueRepo, createMailService, type MailService, type MailTransport } from './mail/index.js';
import { createTenantKeys, type TenantKeys } from './crypto/tenant-keys.js';
import { newId } from './crypto/random.js';
import type { SealedColumn } from './crypto/rotate.js';
import { contactsSpec, createCollection, createSubjectKeys, jobsSpec, type Collection, type SubjectKeyStore } from './records/index.js';
import { createTransferService, type TransferService } from './transfers/index.js';
import type { TransferControlSchema, TransferSchema } from './transfers/transfers.migrations.js';
import type { Kysely } from 'kysely';
import { join } from 'node:path';
import { rememberShredded } from './ops/shred-list.js';

/** Everything that is not HTTP: shared by `tresor serve` and the CLI's local commands. */
export interface Core {
  config: Readonly<TresorConfig>;
  storage: Storage;
  identity: IdentityService;
  platform: PlatformService;
  ledgers: Ledgers;
  billing: ReturnType<typeof createBillingMeter>;
  /** Outbound mail: with the SMTP transport through the durable, sealed queue (`tresor mail queue`). */
  mail: MailService;
  tenantKeys: TenantKeys;
  /** The encrypted collections, by their API path. */
  collections: { contacts: Collection; jobs: Collection };
  /** The keys of the ledger's data-subject pseudonyms (Art. 15), which outlive rotations of the tenant secret. */
  subjectKeys: SubjectKeyStore;
  /** Secure exchange: transfers at four levels, SecuPass keys (docs/transfers.md). */
  transfers: TransferService;
  clock: Clock;
  masterKeyCreated: boolean;
  /** The cipher service (in-process or remote) that seals and opens values under the master key. */
  masterKey: CipherService;
  /** Migrations applied while opening: `control:<name>` and `tenant:<id>:<name>`. */
  appliedMigrations: string[];
  close(): Promise<void>;
}

export const systemClock: Clock = { now: () => new Date() };

export async function openCore(
  config: Readonly<TresorConfig>,
  opts: { log: Logger; clock?: Clock; migrate?: boolean; mailTransport?: MailTransport },
): Promise<Core> {
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
  const clock = opts.clock ?? systemClock;
  // The master key stays with the cipher service: here in-process, or a separate `tresor cipher-service`.
  let masterKey: { ring: CipherService; created: boolean };
  if (config.cipher.url !== '') {
    masterKey = { ring: remoteCipherService(config.cipher.url, { caFile: config.cipher.ca_file, certFile: config.cipher.cert_file, keyFile: config.cipher.key_file }), created: false };
  } else {
    const loaded = loadOrCreateMasterKey({ file: config.master_key.file, value: config.master_key.value });
    if (loaded.created) opts.log.info({ file: config.master_key.file }, 'created a new master key file (mode 0600); back it up apart from the data');
    masterKey = { ring: localCipherService(loaded.ring), created: loaded.created };
  }
  const storage = await openStorage({
    dataDir: config.data_dir,
    databaseUrl: config.database.url,
    poolMax: config.database.pool_max,
    masterKey: masterKey.ring,
  });
  const appliedMigrations: string[] = [];
  try {
    if (opts.migrate !== false) appliedMigrations.push(...(await migrateEverything(storage)));
  } catch (error) {
    await storage.close();
    throw error;
  }
  const hasher = createPasswordHasher(
    { memoryKib: config.argon2.memory_kib, iterations: config.argon2.iterations, parallelism: config.argon2.parallelism },
    { maxConcurrent: config.argon2.max_concurrent, maxQueued: config.argon2.max_queued },
  );
  const ledgers = await createLedgers({
    storage,
    masterKey: masterKey.ring,
    publicUrl: config.server.public_url,
    retentionDays: config.ledger.retention_days,
    technicalRetentionDays: config.ledger.technical_retention_days,
    clock,
  });
  if (appliedMigrations.length > 0) {
    await ledgers.platform.append({
      actor: { tier: 'system', role: 'migrate', id: 'migrate' },
      action: 'technical.migration',
      resource: { type: 'database', id: 'all' },
      outcome: 'success',
      details: { applied: appliedMigrations.length },
    });
  }
  const mail = createMailService({
    transport: opts.mailTransport ?? createMailer(config.mail, opts.log),
    durable: config.mail.transport === 'smtp',
    repo: createMailQueueRepo(storage.control),
    masterKey: masterKey.ring,
    ledger: ledgers.platform,
    clock,
    newId,
    log: opts.log,
  });
  const databaseNames = new Map<string, string>();
  const tenantDbOf = async (tenantId: string) => {
    let databaseName = databaseNames.get(tenantId);
    if (!databaseName) {
      databaseName = (await storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow()).database_name;
      databaseNames.set(tenantId, databaseName);
    }
    return storage.tenantDb({ tenantId, databaseName });
  };
  const tenantKeys = createTenantKeys({
    store: { control: storage.control, tenantDb: tenantDbOf },
    masterKey: masterKey.ring,
    clock,
    newId,
  });
  const subjectKeys = createSubjectKeys({ tenantDb: tenantDbOf, clock });
  const recordDeps = { tenantDb: tenantDbOf, tenantLedger: (tenantId: string) => ledgers.tenant(tenantId), clock, subjectKeys };
  const collections = { contacts: createCollection(contactsSpec, recordDeps), jobs: createCollection(jobsSpec, recordDeps) };
  // The transfer service is made after identity (it uses it); rotation reaches it through this reference.
  let transfers: TransferService | undefined;
  // Memory by default; Redis when configured, so that several nodes share the counters.
  const attempts = config.redis.url === '' ? createMemoryAttemptStore(clock) : createRedisAttemptStore(config.redis.url);
  const identity = createIdentityService({
    control: storage.control,
    hasher,
    clock,
    ledger: ledgers.platform,
    tenantLedger: (tenantId) => ledgers.tenant(tenantId),
    throttle: createLoginThrottle(attempts, clock),
    masterKey: masterKey.ring,
    issuer: `Tresor ${new URL(config.server.public_url).host}`,
    mailer: mail,
    publicUrl: config.server.public_url,
    defaultLanguage: config.mail.language,
    tenantKeys,
    tenantDb: tenantDbOf,
    onAccountDeleted: (tenantId, accountId) => collections.contacts.deletePersonalBook(tenantId, accountId),
    reencryptRecords: async (tenantId, from, to, progress) => {
      let total = 0;
      for (const collection of Object.values(collections)) total += await collection.reencrypt(tenantId, from, to, (n) => progress(total + n));
      // Transfer keys are wrapped under the tenant data key too: re-wrapped, the blobs stay as they are.
      if (transfers) total += await transfers.rekey(tenantId, from, to, (n) => progress(total + n));
      return total;
    },
    keyDerivation: { memoryKib: config.argon2.memory_kib, iterations: config.argon2.iterations, parallelism: config.argon2.parallelism },
    log: opts.log,
  });
  const billing = createBillingMeter({
    tenantLedger: (tenantId) => ledgers.tenant(tenantId),
    // Rows are counted, not read: no key needed.
    recordsStored: async (tenantId) => {
      const db = (await tenantDbOf(tenantId)) as unknown as Kysely<Record<string, { id: string }>>;
      let stored = 0;
      for (const { spec } of Object.values(collections)) {
        const row = await db.selectFrom(spec.table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst();
        stored += Number(row?.n ?? 0);
      }
      return stored;
    },
    tenantIds: async () => (await storage.control.selectFrom('tenants').select('id').execute()).map((t) => t.id),
    clock,
  });
  transfers = createTransferService({
    control: storage.control as unknown as Kysely<TransferControlSchema>,
    tenantDb: async (tenantId) => (await tenantDbOf(tenantId)) as unknown as Kysely<TransferSchema>,
    tenantLedger: (tenantId) => ledgers.tenant(tenantId),
    identity,
    tenantName: async (tenantId) => (await storage.control.selectFrom('tenants').select('name').where('id', '=', tenantId).executeTakeFirstOrThrow()).name,
    mailer: mail,
    publicUrl: config.server.public_url,
    defaultLanguage: config.mail.language,
    blobRoot: join(config.data_dir, 'blobs'),
    clock,
    billing,
    subjectKeys,
  });
  const platform = createPlatformService({
    repo: createPlatformRepo(storage.control),
    storage,
    blobs: createBlobFolders(config.data_dir),
    identity,
    ledgers,
    tenantKeys,
    clock,
    deletionGraceDays: config.lifecycle.deletion_grace_days,
    rememberShredded: (tenantId) => rememberShredded(config.data_dir, tenantId, clock.now()),
  });
  return {
    config,
    storage,
    identity,
    platform,
    ledgers,
    mail,
    tenantKeys,
    collections,
    subjectKeys,
    transfers,
    billing,
    clock,
    masterKeyCreated: masterKey.created,
    masterKey: masterKey.ring,
    appliedMigrations,
    close: async () => {
      // Queued security notices and first attempts still running go out first, but a hanging relay does not
      // hold the shutdown for long (what is not sent stays in the durable queue).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        identity.noticesSent().then(() => mail.settled()),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000))),
      ]);
      clearTimeout(timer);
      mail.close();
      masterKey.ring.close();
      await attempts.close();
      await storage.close();
    },
  };
}

/** Forward-only migrations of the control database and then every tenant database. */
export async function migrateEverything(storage: Storage): Promise<string[]> {
  const applied = (await storage.migrateControl()).map((m) => `control:${m}`);
  const tenants = await storage.control.selectFrom('tenants').select(['id', 'database_name']).execute();
  for (const t of tenants) {
    for (const m of await storage.migrateTenant({ tenantId: t.id, databaseName: t.database_name })) {
      applied.push(`tenant:${t.id}:${m}`);
    }
  }
  return applied;
}

/**
 * Creates the first operator account if there is none. Returns its one-time password, which the
 * caller prints once; it is never stored or logged.
 */
export async function ensureFirstOperator(core: Core): Promise<{ login: string; oneTimePassword: string } | undefined> {
  if (await core.identity.hasOperator()) return undefined;
  const login = 'operator';
  const { oneTimePassword } = await core.identity.createAccount({ login, tier: 'operator', resellerId: null });
  return { login, oneTimePassword };
}

/** Every value sealed under the master key, for `tresor keys rotate-master` and `retire-master`. */
export async function sealedColumns(core: Core): Promise<SealedColumn[]> {
  const control = core.storage.control as unknown as SealedColumn['db'];
  const columns: SealedColumn[] = [
    { database: 'control', db: control, table: 'tenant_keys', key: 'tenant_id', column: 'sealed_component', aad: (r) => `tenant-component|${String(r.tenant_id)}` },
    { database: 'control', db: control, table: 'second_factors', key: 'account_id', column: 'sealed_secret', aad: (r) => `totp|${String(r.account_id)}` },
    { database: 'control', db: control, table: 'tenant_db_credentials', key: 'tenant_id', column: 'sealed_password', aad: (r) => `tenant-db-password|${String(r.tenant_id)}` },
    { database: 'control', db: control, table: 'mail_queue', key: 'id', column: 'sealed_message', aad: (r) => `mail-queue|${String(r.id)}` },
    { database: 'control', db: control, table: 'ledger_keys', key: 'id', column: 'sealed_private_key', aad: () => ledgerKeyAad(undefined), legacyAad: () => `ledger-key|${core.ledgers.platform.origin}` },
  ];
  const tenants = await core.storage.control.selectFrom('tenants').select(['id', 'database_name']).orderBy('created_at').execute();
  for (const t of tenants) {
    const db = (await core.storage.tenantDb({ tenantId: t.id, databaseName: t.database_name })) as unknown as SealedColumn['db'];
    const origin = (await core.ledgers.tenant(t.id)).origin;
    columns.push({ database: `tenant ${t.id}`, db, table: 'ledger_keys', key: 'id', column: 'sealed_private_key', aad: () => ledgerKeyAad(t.id), legacyAad: () => `ledger-key|${origin}` });
  }
  return columns;
}
