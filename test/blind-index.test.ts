import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { blindIndexPlanMigration, contactsSpec, jobsSpec } from '../src/records/index.js';
import { bearerLogin, engines, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/**
 * Blind-index lengths planned by CipherSweet's rule (docs/keys.md): each key version's index is built with
 * the length planned from the tenant's expected row count when that version was first used, search always
 * uses that length, and a changed count takes effect when the rotation of the tenant secret re-indexes
 * every record. Only the tenant's admin and data users may read or change the plan.
 */
describe.each(engines)('blind-index plans (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const tokens: Record<string, string> = {};
  let tenantId = '';
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const invite = async (by: string, email: string, role: string, password: string) => {
    expect((await call(by, 'POST', '/api/v1/accounts', { email, role, tenantId })).statusCode).toBe(201);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } });
    expect(res.statusCode, res.body).toBe(204);
    return bearerLogin(app, email, password);
  };
  const tenantDb = async () => {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId, databaseName: row.database_name });
  };
  const rawContacts = async () => {
    const db = await tenantDb();
    return db.selectFrom('contacts').select(['id', 'key_version', 'name_bidx', 'email_bidx', 'phone_bidx']).execute();
  };
  const names = async (query: string) => (await call('ina', 'GET', `/api/v1/contacts?${query}`)).json<{ name: string }[]>().map((c) => c.name).sort();

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const tenant = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Kanzlei Index' })).json<{ id: string; initialKeys: { activationKey: string } }>();
    tenantId = tenant.id;
    tokens.admin = await invite('operator', 'admin@kanzlei-index.test', 'admin', 'Verwaltung der Akten 2026');
    tokens.ina = await invite('admin', 'ina@kanzlei-index.test', 'member', 'Akten in guten Händen');
    tokens.tech = await invite('admin', 'tech@service-index.test', 'technician', 'Monteur mit Koffer 2026');
    expect((await call('ina', 'POST', '/api/v1/keys/activate', { activationKey: tenant.initialKeys.activationKey })).statusCode).toBe(204);
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('builds a new tenant’s indexes with the length planned from the default expected row count', async () => {
    for (const [name, email, phone] of [
      ['Anna Akte', 'anna@akte.test', '+49 30 1000001'],
      ['Bruno Brief', 'bruno@brief.test', '+49 30 1000002'],
    ]) {
      expect((await call('ina', 'POST', '/api/v1/contacts', { name, email, phone })).statusCode).toBe(201);
    }
    // 1,000 expected rows: 8 bits (2 ≤ 1000/256 ≈ 3.9 < √1000 ≈ 31.6), two hex digits.
    for (const row of await rawContacts()) {
      for (const value of [row.name_bidx, row.email_bidx, row.phone_bidx]) expect(value).toMatch(/^[0-9a-f]{2}$/);
    }
    expect((await call('admin', 'GET', '/api/v1/contacts/index-plan')).json()).toEqual({ collection: 'contacts', expectedRows: 1000, nextBits: 8, built: [{ keyVersion: 1, bits: 8 }] });
    expect(await names(`email=${encodeURIComponent(' ANNA@akte.test')}`)).toEqual(['Anna Akte']);
  });

  it('lets only the tenant’s data users change the expected row count (its admin only sees it), with clear errors', async () => {
    for (const who of ['operator', 'tech']) {
      expect((await call(who, 'PUT', '/api/v1/contacts/index-plan', { expectedRows: 50_000 })).statusCode, who).toBe(403);
      expect((await call(who, 'GET', '/api/v1/contacts/index-plan')).statusCode, who).toBe(403);
    }
    // The index length trades search speed against what an index reveals: not an administrator's call.
    const byAdmin = await call('admin', 'PUT', '/api/v1/contacts/index-plan', { expectedRows: 8 });
    expect([byAdmin.statusCode, byAdmin.json<{ message: string }>().message]).toEqual([403, "the blind-index plan of contacts is changed by the tenant's data users (member or dpo)"]);
    expect((await call('admin', 'GET', '/api/v1/contacts/index-plan')).json()).toMatchObject({ expectedRows: 1000 });
    const tooFew = await call('ina', 'PUT', '/api/v1/contacts/index-plan', { expectedRows: 7 });
    expect(tooFew.statusCode).toBe(400);
    expect(tooFew.json<{ message: string }>().message).toBe('expectedRows must be a whole number from 8 to 2147483647: the number of records the collection is expected to hold');
    expect((await call('ina', 'PUT', '/api/v1/contacts/index-plan', { expectedRows: 'viele' })).statusCode).toBe(400);

    const set = await call('ina', 'PUT', '/api/v1/contacts/index-plan', { expectedRows: 1_000_000 });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toEqual({ collection: 'contacts', expectedRows: 1_000_000, nextBits: 18 });
    const events = await (await core.ledgers.tenant(tenantId)).query({ action: 'record.index-plan' });
    expect(events.map((e) => e.payload)).toEqual([expect.objectContaining({ details: { expectedRows: 1_000_000, nextBits: 18 } })]);
    // Jobs keep their own plan.
    expect((await call('ina', 'GET', '/api/v1/jobs/index-plan')).json()).toMatchObject({ collection: 'jobs', expectedRows: 1000, nextBits: 8 });
  });

  it('keeps the built length for the current key version, so search still finds old and new records', async () => {
    expect((await call('ina', 'POST', '/api/v1/contacts', { name: 'Clara Cousine', email: 'clara@akte.test' })).statusCode).toBe(201);
    for (const row of await rawContacts()) expect(row.name_bidx).toMatch(/^[0-9a-f]{2}$/);
    expect(await names('name=anna%20akte')).toEqual(['Anna Akte']);
    expect(await names('name=CLARA%20COUSINE')).toEqual(['Clara Cousine']);
    expect((await call('ina', 'GET', '/api/v1/contacts/index-plan')).json()).toMatchObject({ expectedRows: 1_000_000, nextBits: 18, built: [{ keyVersion: 1, bits: 8 }] });
  });

  it('re-indexes every record with the new length when the tenant secret is rotated', async () => {
    const rotated = await call('ina', 'POST', '/api/v1/keys/rotate', {});
    expect(rotated.statusCode, rotated.body).toBe(200);
    expect(JSON.parse(rotated.body.trim().split('\n').at(-1)!)).toMatchObject({ version: 2, reencrypted: 3 });
    const rows = await rawContacts();
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row.key_version).toBe(2);
      // 18 bits: five hex digits, the low two bits of the last one zero.
      expect(row.name_bidx).toMatch(/^[0-9a-f]{4}[048c]$/);
      expect(row.email_bidx).toMatch(/^[0-9a-f]{4}[048c]$/);
    }
    expect((await call('ina', 'GET', '/api/v1/contacts/index-plan')).json()).toEqual({
      collection: 'contacts',
      expectedRows: 1_000_000,
      nextBits: 18,
      built: [
        { keyVersion: 1, bits: 8 },
        { keyVersion: 2, bits: 18 },
      ],
    });
    expect(await names('name=anna%20akte')).toEqual(['Anna Akte']);
    expect(await names(`email=${encodeURIComponent('Clara@Akte.test')}`)).toEqual(['Clara Cousine']);
    expect(await names(`phone=${encodeURIComponent('0049 30 100 0002')}`)).toEqual(['Bruno Brief']);
    expect(await names('name=niemand')).toEqual([]);
    // New records at the new version get the new length too.
    expect((await call('ina', 'POST', '/api/v1/contacts', { name: 'Dora Datei' })).statusCode).toBe(201);
    expect((await rawContacts()).every((r) => /^[0-9a-f]{4}[048c]$/.test(r.name_bidx))).toBe(true);
    expect(await names('name=dora%20datei')).toEqual(['Dora Datei']);
  });

  it('records the fixed 15 bits for key versions that already hold records when a database is migrated from before planned lengths', async () => {
    const db = await tenantDb();
    await db.deleteFrom('tenant_meta').where('key', 'like', 'records.bidx-bits.%').execute();
    await blindIndexPlanMigration([contactsSpec, jobsSpec]).up(db as never);
    const plans = await db.selectFrom('tenant_meta').select(['key', 'value']).where('key', 'like', 'records.bidx-bits.%').execute();
    expect(plans).toEqual([{ key: 'records.bidx-bits.contacts.v2', value: '15' }]); // no jobs were written: nothing to keep
  });
});
