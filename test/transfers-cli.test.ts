import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cuttingProxy, freePort, startServe, tresor, tresorAsync, type ServeProcess } from './cli-process.js';
import { GOOD_PASSWORD, mailedKey, mailedTransferLink, readOutbox } from './helpers.js';
import { encodePublicKey, fingerprint, generateKeyPair, randomFileKey, toBase64Url, wrapFileKey } from '../src/shared-e2e/index.js';

/**
 * The secure exchange end to end through the real CLI against a real `tresor serve`: levels 1, 3 and 4,
 * a recipient's first SecuPass key approved by the sender with its fingerprint, a key reset that makes
 * old transfers unreadable until approved again, and a SecuPass key equal to the password refused.
 */
describe('tresor send / receive (CLI, real server)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-transfer-cli-'));
  const files = join(dir, 'files');
  let server: ServeProcess;
  const env: Record<string, string> = {};
  const tokens: Record<string, string> = {};
  const outbox = join(dir, 'data', 'outbox');
  const cli = (who: string | undefined, args: string[], extra: Record<string, string> = {}) =>
    tresor(['--json', ...args], { cwd: dir, env: { ...env, ...(who ? { TRESOR_TOKEN: tokens[who]! } : {}), ...extra } });
  const curl = (token: string | undefined, method: string, path: string, body?: unknown) => {
    const r = spawnSync('curl', ['-sS', '-X', method, '-w', '\n%{http_code}', '--cacert', env.TRESOR_CACERT!, ...(token ? ['-H', `authorization: Bearer ${token}`] : []), ...(body === undefined ? [] : ['-H', 'content-type: application/json', '-d', JSON.stringify(body)]), `${server.url}${path}`], { encoding: 'utf8' }).stdout;
    return Number(r.slice(r.lastIndexOf('\n') + 1));
  };
  const login = (email: string, password = GOOD_PASSWORD) => {
    const r = tresor(['--json', 'login', '--login', email], { cwd: dir, env: { ...env, TRESOR_PASSWORD: password } });
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { sessionToken: string }).sessionToken;
  };
  const accept = (email: string) => expect(curl(undefined, 'POST', '/api/v1/auth/invitation/accept', { key: mailedKey(outbox, email), newPassword: GOOD_PASSWORD })).toBe(204);
  const BIG = randomBytes(3 * 1024 * 1024 + 12345); // crosses many 64 KiB records
  const SECRET_TEXT = Buffer.from('Befund: Patientin Frieda Beispiel, geboren 01.02.1960 — streng vertraulich\n'.repeat(100));
  /**
   * Two files for the resume tests in `<name>/` (a 20 MiB scan and a note) and, in `<name>-changed/`, a scan
   * of the same name and size that differs only in its last byte, far behind any cut.
   */
  const filesToResume = (name: string, noteText: string) => {
    const folder = join(dir, name);
    const changed = join(dir, `${name}-changed`);
    for (const d of [folder, changed]) {
      rmSync(d, { recursive: true, force: true });
      mkdirSync(d);
    }
    const scan = randomBytes(20 * 1024 * 1024 + 4321);
    const note = Buffer.from(noteText.repeat(50));
    writeFileSync(join(folder, 'scan.bin'), scan);
    writeFileSync(join(folder, 'nachtrag.txt'), note);
    const other = Buffer.from(scan);
    other[scan.length - 1] = other[scan.length - 1]! ^ 1;
    writeFileSync(join(changed, 'scan.bin'), other);
    return { folder, changed, scan, note };
  };
  /** A transfer's folder of blobs (under its tenant's), if it exists. */
  const transferDirOf = (tid: string) => readdirSync(join(dir, 'data', 'blobs')).map((t) => join(dir, 'data', 'blobs', t, tid)).find((d) => existsSync(d));
  /** The sizes of a transfer's blobs once the server finished the broken request on its own time (bounded wait). */
  const settledSizes = async (transferDir: string) => {
    const sizes = () => readdirSync(transferDir).map((f) => statSync(join(transferDir, f)).size).sort((a, b) => a - b);
    let held = sizes();
    for (let i = 0, last = ''; i < 100 && last !== held.join(); i++) {
      last = held.join();
      await new Promise((r) => setTimeout(r, 50));
      held = sizes();
    }
    return { held, sizes };
  };

  beforeAll(async () => {
    const port = await freePort();
    Object.assign(env, { TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' });
    server = await startServe({ cwd: dir, env });
    const local = { ...env }; // the platform owner's terminal: no TRESOR_URL
    env.TRESOR_URL = server.url;
    env.TRESOR_CACERT = join(dir, 'data', 'pki', 'ca.pem');
    const tenant = JSON.parse(tresor(['--json', 'tenant', 'create', '--name', 'Praxis am Markt'], { cwd: dir, env: local }).stdout) as { id: string; initialKeys: { activationKey: string } };
    expect(tresor(['account', 'invite', '--email', 'admin@praxis.test', '--role', 'admin', '--tenant', tenant.id], { cwd: dir, env: local }).code).toBe(0);
    accept('admin@praxis.test');
    tokens.admin = login('admin@praxis.test');
    expect(curl(tokens.admin, 'POST', '/api/v1/accounts', { email: 'sender@praxis.test', role: 'member' })).toBe(201);
    accept('sender@praxis.test');
    tokens.sender = login('sender@praxis.test');
    expect(curl(tokens.sender, 'POST', '/api/v1/keys/activate', { activationKey: tenant.initialKeys.activationKey })).toBe(204);
    expect(cli('sender', ['secupass', 'init'], { TRESOR_SECUPASS: 'Absender Schlüssel 99' }).code).toBe(0);
    writeFileSync(join(dir, 'big.bin'), BIG);
    writeFileSync(join(dir, 'befund.txt'), SECRET_TEXT);
  }, 180_000); // a server and a dozen CLI processes with Argon2id: slow on a loaded machine
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('level 1: sent and received with the CLI, the address as the key to the link', async () => {
    const sent = cli('sender', ['send', '--to', 'eins@example.org', '--subject', 'Ihre Unterlagen', '--message', 'Anbei.', '--level', '1', join(dir, 'befund.txt')]);
    expect(sent.code, sent.stderr).toBe(0);
    const { link } = mailedTransferLink(outbox, 'eins@example.org');
    expect(cli(undefined, ['receive', link, '--out', join(files, 'l1-wrong'), '--email', 'falsch@example.org']).code).toBe(4);
    const got = cli(undefined, ['receive', link, '--out', join(files, 'l1'), '--email', 'eins@example.org']);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ subject: 'Ihre Unterlagen', message: 'Anbei.', level: 1 });
    expect(readFileSync(join(files, 'l1', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);
    // The mail got lost: the sender sends a new link; the earlier one no longer opens, the new one does.
    const id = (JSON.parse(sent.stdout) as { id: string }).id;
    const again = tresor(['transfer', 'notify', id, '--recipient', 'Eins@Example.org'], { cwd: dir, env: { ...env, TRESOR_TOKEN: tokens.sender! } });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe('A new link was sent to Eins@Example.org; the earlier link no longer opens.');
    const fresh = mailedTransferLink(outbox, 'eins@example.org');
    expect(fresh.link).not.toBe(link);
    expect(cli(undefined, ['receive', link, '--out', join(files, 'l1-old'), '--email', 'eins@example.org']).code).toBe(3);
    const gotAgain = cli(undefined, ['receive', fresh.link, '--out', join(files, 'l1-again'), '--email', 'eins@example.org']);
    expect(gotAgain.code, gotAgain.stderr).toBe(0);
    expect(readFileSync(join(files, 'l1-again', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);
    expect(cli('sender', ['transfer', 'notify', id, '--recipient', 'niemand@example.org']).code).toBe(3);
    // The server log names the routes it served, never a link secret or a download token.
    for (let i = 0; i < 50 && !server.output().includes('/api/v1/r/'); i++) await new Promise((r) => setTimeout(r, 100)); // pino writes asynchronously
    const log = server.output();
    expect(log).toContain('/api/v1/r/');
    expect(log).not.toContain(fresh.secret);
    expect(log).not.toContain(mailedTransferLink(outbox, 'eins@example.org').secret);
    expect(log).not.toMatch(/token=[A-Za-z0-9_-]{43}/);
  });

  it("level 3: the recipient's first key is approved by the sender with its fingerprint; only then the files open", () => {
    const sent = cli('sender', ['send', '--to', 'gast@example.org', '--subject', 'Röntgenbilder', '--level', '3', join(dir, 'big.bin'), join(dir, 'befund.txt')], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(sent.code, sent.stderr).toBe(0);
    const transfer = JSON.parse(sent.stdout) as { id: string; recipients: { keyState: string }[] };
    expect(transfer.recipients[0]!.keyState).toBe('pending-key');
    const { link, recipientId, secret, fingerprint } = mailedTransferLink(outbox, 'gast@example.org');
    expect(fingerprint).toBeUndefined(); // no key at sending time
    // The guest registers from the link, accepts the mailed invitation and logs in.
    expect(curl(undefined, 'POST', `/api/v1/r/${recipientId}/register`, { secret })).toBe(202);
    accept('gast@example.org');
    tokens.gast = login('gast@example.org');
    expect(cli('gast', ['receive', link, '--out', join(files, 'none')]).stderr).toMatch(/create your SecuPass key/);
    // The SecuPass key must differ from the login password (checked by hash, neither sent).
    const same = cli('gast', ['secupass', 'init'], { TRESOR_SECUPASS: GOOD_PASSWORD });
    expect(same.code).toBe(5);
    expect(same.stderr).toMatch(/must differ from your login password/);
    const init = cli('gast', ['secupass', 'init'], { TRESOR_SECUPASS: 'Gast Schlüssel 4711' });
    expect(init.code, init.stderr).toBe(0);
    const fp = (JSON.parse(init.stdout) as { fingerprint: string }).fingerprint;
    const waiting = cli('gast', ['receive', link, '--out', join(files, 'l3')], { TRESOR_SECUPASS: 'Gast Schlüssel 4711' });
    expect(waiting.code).toBe(5);
    expect(waiting.stderr).toMatch(/waits for the sender's approval/);
    const list = JSON.parse(cli('sender', ['transfer', 'list']).stdout) as { id: string; recipients: { email: string; keyState: string; pendingFingerprint: string }[] }[];
    expect(list.find((t) => t.id === transfer.id)!.recipients[0]).toMatchObject({ keyState: 'approval-needed', pendingFingerprint: fp });
    const shortened = cli('sender', ['transfer', 'approve', transfer.id, '--recipient', 'gast@example.org', '--fingerprint', fp.slice(0, 39)], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(shortened.code).toBe(6);
    expect(shortened.stderr).toMatch(/a fingerprint has 64 hex digits/);
    const other = fp.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const wrongFp = cli('sender', ['transfer', 'approve', transfer.id, '--recipient', 'gast@example.org', '--fingerprint', other], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(wrongFp.code).toBe(5);
    expect(wrongFp.stderr).toContain(`has the fingerprint ${fp}, not ${other}`);
    const approvedMails = () => readOutbox(outbox).filter((m) => m.to === 'gast@example.org' && m.subject === 'Tresor: Ihre Dateien lassen sich jetzt öffnen');
    expect(approvedMails()).toHaveLength(0); // the refused approval above told the guest nothing
    // Typed as it was read out over the phone: capitals, spaces between the groups.
    const approved = cli('sender', ['transfer', 'approve', transfer.id, '--recipient', 'gast@example.org', '--fingerprint', fp.toUpperCase().replaceAll('-', ' ')], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(approved.code, approved.stderr).toBe(0);
    // The guest (not the sender, who got the key-pending mail) is told that the files can be opened now.
    expect(approvedMails()).toHaveLength(1);
    expect(approvedMails()[0]!.text).toContain('sender@praxis.test hat Ihren SecuPass-Schlüssel freigegeben.');
    expect(cli('gast', ['receive', link, '--out', join(files, 'l3-wrong')], { TRESOR_SECUPASS: 'falsch' }).stderr).toMatch(/SecuPass key is not right/);
    const got = cli('gast', ['receive', link, '--out', join(files, 'l3')], { TRESOR_SECUPASS: 'Gast Schlüssel 4711' });
    expect(got.code, got.stderr).toBe(0);
    expect(readFileSync(join(files, 'l3', 'big.bin')).equals(BIG)).toBe(true);
    expect(readFileSync(join(files, 'l3', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);
    // The server never had the file key: the blob is ciphertext and the database holds no key to it.
    const blobs = join(dir, 'data', 'blobs');
    for (const tenant of readdirSync(blobs)) {
      const folder = join(blobs, tenant, transfer.id);
      for (const f of readdirSync(folder)) expect(readFileSync(join(folder, f)).includes(SECRET_TEXT.subarray(0, 40))).toBe(false);
    }
  }, 180_000); // a dozen CLI processes, each with Argon2id: slow on a loaded machine

  it('"request files" from the CLI: the member makes an upload link, an outsider uploads with tresor upload, the member receives', () => {
    const made = cli('sender', ['transfer', 'request', '--level', '3', '--email', 'zulieferer@example.org', '--message', 'Bitte die Messwerte.']);
    expect(made.code, made.stderr).toBe(0);
    const { link } = JSON.parse(made.stdout) as { link: string };
    expect(link).toMatch(/\/app\/upload\/[0-9a-f-]{36}#s=[A-Za-z0-9_-]{43}&fp=/);
    expect(readFileSync(join(outbox, readdirSync(outbox).filter((f) => f.endsWith('.eml')).sort().at(-1)!), 'utf8')).toContain('zulieferer@example.org');
    // A link whose fingerprint was changed (a swapped key) is refused before anything is encrypted.
    const swapped = cli(undefined, ['upload', link.replace(/fp=[0-9a-f]/, (m) => (m.endsWith('0') ? 'fp=1' : 'fp=0')), '--from', 'zulieferer@example.org', '--subject', 'Messwerte', join(dir, 'befund.txt')]);
    expect(swapped.code).toBe(5);
    expect(swapped.stderr).toMatch(/not the one the link names/);
    const up = cli(undefined, ['upload', link, '--from', 'zulieferer@example.org', '--subject', 'Messwerte', '--message', 'Anbei die Werte.', join(dir, 'big.bin')]);
    expect(up.code, up.stderr).toBe(0);
    const got = cli('sender', ['receive', mailedTransferLink(outbox, 'sender@praxis.test').link, '--out', join(files, 'request')], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ subject: 'Messwerte', message: 'Anbei die Werte.', level: 3 });
    expect(readFileSync(join(files, 'request', 'big.bin')).equals(BIG)).toBe(true);
  });

  it('a connection broken in the middle of an upload: send and upload go on from what the server holds, and the file arrives intact', async () => {
    // The first connection to carry more than 1.5 MiB towards the server is cut.
    let armed = false;
    let cuts = 0;
    const proxy = await cuttingProxy(Number(new URL(server.url).port), (sent) => {
      if (!armed || sent <= 1.5 * 1024 * 1024) return 'go';
      armed = false;
      cuts++;
      return 'cut';
    });
    const via = { ...env, TRESOR_URL: proxy.url };
    try {
      armed = true;
      const sent = await tresorAsync(['--json', 'send', '--to', 'unterbrochen@example.org', '--subject', 'Großer Befund', '--level', '1', join(dir, 'big.bin')], { cwd: dir, env: { ...via, TRESOR_TOKEN: tokens.sender! } });
      expect(sent.code, sent.stderr).toBe(0);
      expect(cuts).toBe(1);
      const got = cli(undefined, ['receive', mailedTransferLink(outbox, 'unterbrochen@example.org').link, '--out', join(files, 'cut'), '--email', 'unterbrochen@example.org']);
      expect(got.code, got.stderr).toBe(0);
      expect(readFileSync(join(files, 'cut', 'big.bin')).equals(BIG)).toBe(true);

      // The same through a "request files" link (no account: the server names what it holds in a refusal).
      const made = cli('sender', ['transfer', 'request', '--level', '1']);
      expect(made.code, made.stderr).toBe(0);
      const link = (JSON.parse(made.stdout) as { link: string }).link.replace(server.url, via.TRESOR_URL);
      armed = true;
      const up = await tresorAsync(['--json', 'upload', link, '--from', 'aussen@example.org', '--subject', 'Messreihe', join(dir, 'big.bin')], { cwd: dir, env: { TRESOR_CACERT: env.TRESOR_CACERT! } });
      expect(up.code, up.stderr).toBe(0);
      expect(cuts).toBe(2);
      const mine = cli('sender', ['receive', mailedTransferLink(outbox, 'sender@praxis.test').link, '--out', join(files, 'cut-request'), '--email', 'sender@praxis.test']);
      expect(mine.code, mine.stderr).toBe(0);
      expect(readFileSync(join(files, 'cut-request', 'big.bin')).equals(BIG)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('level 4: message and names end to end; a key reset makes it unreadable until the sender approves again', () => {
    const sent = cli('sender', ['send', '--to', 'gast@example.org', '--subject', 'Befund', '--message', 'Die Werte sind gut, Frau Beispiel.', '--level', '4', join(dir, 'befund.txt')], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(sent.code, sent.stderr).toBe(0);
    const transfer = JSON.parse(sent.stdout) as { id: string; recipients: { keyState: string }[] };
    expect(transfer.recipients[0]!.keyState).toBe('ok'); // wrapped at once for the known key
    const { link, fingerprint } = mailedTransferLink(outbox, 'gast@example.org');
    expect(fingerprint).toMatch(/^[0-9a-f]{4}(-[0-9a-f]{4}){15}$/);
    const mail = readFileSync(join(outbox, readdirSync(outbox).filter((f) => f.endsWith('.eml')).sort().at(-1)!), 'utf8');
    expect(mail).not.toContain('Befund'); // levels 3/4 keep the subject out of the mail
    const got = cli('gast', ['receive', link, '--out', join(files, 'l4')], { TRESOR_SECUPASS: 'Gast Schlüssel 4711' });
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ message: 'Die Werte sind gut, Frau Beispiel.', level: 4 });
    expect(readFileSync(join(files, 'l4', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);

    // A reset: what was sent for the old key is unreadable now, until the sender approves the new key.
    const reset = cli('gast', ['secupass', 'init', '--reset'], { TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' });
    expect(reset.code, reset.stderr).toBe(0);
    const { fingerprint: newFp, pendingApprovals } = JSON.parse(reset.stdout) as { fingerprint: string; pendingApprovals: number };
    expect(pendingApprovals).toBe(2); // this transfer and the level-3 one
    const locked = cli('gast', ['receive', link, '--out', join(files, 'l4-reset')], { TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' });
    expect(locked.code).toBe(5);
    expect(cli('sender', ['transfer', 'approve', transfer.id, '--recipient', 'gast@example.org', '--fingerprint', newFp], { TRESOR_SECUPASS: 'Absender Schlüssel 99' }).code).toBe(0);
    const again = cli('gast', ['receive', link, '--out', join(files, 'l4-reset')], { TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(files, 'l4-reset', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);
  });

  it("a wrap for a foreign key slipped into the link's answer is refused by tresor receive, and nothing is written", async () => {
    // A TLS proxy with the server's own certificate (what a compromised server or a man in the middle with
    // its key could send): it passes everything through but rewrites the answer of `open` so that the file
    // keys are wrapped for another key pair, with that key's fingerprint.
    const other = await generateKeyPair();
    const otherFingerprint = await fingerprint(other.publicKey);
    const proxy = await rewritingProxy({ url: server.url, dataDir: join(dir, 'data') }, /^\/api\/v1\/r\/[0-9a-f-]{36}\/open$/, async (answer) => {
      const body = answer as { transferId: string; files: { id: string }[]; bundle?: { id: string } };
      const foreign = async (id: string) => ({ fingerprint: otherFingerprint, wrapped: toBase64Url(await wrapFileKey(randomFileKey(), other.publicKey, `transfer:${body.transferId}/file:${id}`)) });
      const files = [];
      for (const f of body.files) files.push({ ...f, ...(await foreign(f.id)) });
      return { ...body, files, ...(body.bundle ? { bundle: { ...body.bundle, ...(await foreign(body.bundle.id)) } } : {}) };
    });
    const via = proxy.url;
    const { link } = mailedTransferLink(outbox, 'gast@example.org'); // the level-4 transfer, approved for the guest's new key
    try {
      const refused = await tresorAsync(['--json', 'receive', link.replace(server.url, via), '--out', join(files, 'foreign')], {
        cwd: dir,
        env: { ...env, TRESOR_URL: via, TRESOR_TOKEN: tokens.gast!, TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' },
      });
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/the files are not wrapped for your key [0-9a-f-]+ \(the link expects [0-9a-f-]+\): refusing/);
      expect(proxy.rewritten()).toBe(1);
      expect(existsSync(join(files, 'foreign', 'befund.txt'))).toBe(false);
    } finally {
      await proxy.close();
    }
    // The same link straight to the server opens (the refusal came from the foreign wraps alone).
    const straight = cli('gast', ['receive', link, '--out', join(files, 'not-foreign')], { TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' });
    expect(straight.code, straight.stderr).toBe(0);
    expect(readFileSync(join(files, 'not-foreign', 'befund.txt')).equals(SECRET_TEXT)).toBe(true);
  }, 120_000);
  it("a recipient key swapped in the server's answer is refused by tresor send before a byte goes up, and the draft does not stay behind", async () => {
    // The answer to creating the transfer offers another public key for the guest, under the guest's own
    // fingerprint (the one the sender approved).
    const other = await generateKeyPair();
    const proxy = await rewritingProxy({ url: server.url, dataDir: join(dir, 'data') }, /^\/api\/v1\/transfers$/, async (answer) => {
      const body = answer as { recipients: { publicKey?: string }[] };
      return { ...body, recipients: await Promise.all(body.recipients.map(async (r) => (r.publicKey ? { ...r, publicKey: await encodePublicKey(other.publicKey) } : r))) };
    });
    try {
      const refused = await tresorAsync(['send', '--to', 'gast@example.org', '--subject', 'Untergeschobener Schlüssel', '--level', '3', join(dir, 'befund.txt')], {
        cwd: dir,
        env: { ...env, TRESOR_URL: proxy.url, TRESOR_TOKEN: tokens.sender!, TRESOR_SECUPASS: 'Absender Schlüssel 99' },
      });
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/the key offered for [0-9a-f-]+ does not have the fingerprint the server states: refusing to encrypt for it/);
      expect(proxy.rewritten()).toBe(1);
    } finally {
      await proxy.close();
    }
    const listed = cli('sender', ['transfer', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).not.toContain('Untergeschobener Schlüssel');
  });
  it('a send cut off for good goes on with tresor transfer resume: the files are checked against what arrived, then only the rest goes up', async () => {
    // The first 10 MiB towards the server get through, then nothing: the connection dies in the middle of
    // the big file, and tresor send gives up (a laptop closed, say).
    const proxy = await cuttingProxy(Number(new URL(server.url).port), (_sent, total) => (total > 10 * 1024 * 1024 ? 'dead' : 'go'));
    const via = { ...env, TRESOR_URL: proxy.url };
    const { folder, changed, scan, note } = filesToResume('resume', 'Nachtrag: Kontrolle in sechs Wochen, Frau Beispiel.\n');
    const key = { TRESOR_SECUPASS: 'Absender Schlüssel 99' };
    try {
      const cut = await tresorAsync(['send', '--to', 'gast@example.org', '--subject', 'Unterbrochen', '--message', 'Zwei Dateien, eine abgebrochen.', '--level', '4', join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')], { cwd: dir, env: { ...via, ...key, TRESOR_TOKEN: tokens.sender! } });
      expect(cut.code).not.toBe(0);
      const id = /transfer ([0-9a-f-]{36}) was not sent; go on with `tresor transfer resume \1/.exec(cut.stderr)?.[1];
      expect(id, cut.stderr).toBeDefined();
      const transferDir = transferDirOf(id!)!;
      const { held, sizes } = await settledSizes(transferDir);
      // All the proxy passed on counts: more than the first 8 MiB piece of the scan.
      expect(held.some((n) => n > 8 * 1024 * 1024 && n < scan.length), `${held.join()} ${cut.stderr}`).toBe(true);

      // A file left out is asked for by its name (read from the level-4 bundle); another file of the same
      // name and size is refused, and nothing changes on the server.
      const short = cli('sender', ['transfer', 'resume', id!, join(folder, 'scan.bin')], key);
      expect(short.code).toBe(6);
      expect(short.stderr).toContain(`give these files again: nachtrag.txt (${note.length} bytes)`);
      const wrong = cli('sender', ['transfer', 'resume', id!, join(changed, 'scan.bin'), join(folder, 'nachtrag.txt')], key);
      expect(wrong.code).toBe(5);
      expect(wrong.stderr).toMatch(/scan\.bin is not the file whose upload was interrupted/);
      expect(sizes()).toEqual(held);
      expect(cli('sender', ['transfer', 'resume', id!, join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')], { TRESOR_SECUPASS: 'falsch' }).stderr).toMatch(/SecuPass key is not right/);

      // Bytes on the server that are not what the file encrypts to (a disk error, or a server that lies) are
      // found before anything more goes up.
      const partial = join(transferDir, readdirSync(transferDir).find((f) => readFileSync(join(transferDir, f)).length === held.find((n) => n > 8 * 1024 * 1024 && n < scan.length))!);
      const original = readFileSync(partial);
      const spoilt = Buffer.from(original);
      spoilt[5 * 1024 * 1024] = spoilt[5 * 1024 * 1024]! ^ 1;
      writeFileSync(partial, spoilt);
      const differs = cli('sender', ['transfer', 'resume', id!, join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')], key);
      expect(differs.code).toBe(5);
      expect(differs.stderr).toMatch(/the bytes the server holds \(up to 8388608\) are not what this file encrypts to/);
      expect(readFileSync(partial).equals(spoilt)).toBe(true);
      writeFileSync(partial, original);

      // The same files, in another order: the rest goes up and the transfer is sent.
      const resumed = cli('sender', ['transfer', 'resume', id!, join(folder, 'nachtrag.txt'), join(folder, 'scan.bin')], key);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(JSON.parse(resumed.stdout)).toMatchObject({ id, recipients: [{ email: 'gast@example.org', keyState: 'ok' }] });
      const got = cli('gast', ['receive', mailedTransferLink(outbox, 'gast@example.org').link, '--out', join(files, 'resumed')], { TRESOR_SECUPASS: 'Neuer Gast Schlüssel 1' });
      expect(got.code, got.stderr).toBe(0);
      expect(JSON.parse(got.stdout)).toMatchObject({ message: 'Zwei Dateien, eine abgebrochen.', level: 4 });
      expect(readFileSync(join(files, 'resumed', 'scan.bin')).equals(scan)).toBe(true);
      expect(readFileSync(join(files, 'resumed', 'nachtrag.txt')).equals(note)).toBe(true);
      // Sent is sent: no second resume.
      expect(cli('sender', ['transfer', 'resume', id!, join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')], key).code).toBe(5);
    } finally {
      await proxy.close();
    }
  }, 180_000);

  it('tresor upload cut off for good goes on when the same command runs again (keys kept on this machine only); --restart gives it up', async () => {
    const { folder, changed, scan, note } = filesToResume('upload-resume', 'Nachlieferung: Zählerstände Haus 4, Familie Beispiel.\n');
    const made = cli('sender', ['transfer', 'request', '--level', '4']);
    expect(made.code, made.stderr).toBe(0);
    const link = (JSON.parse(made.stdout) as { link: string }).link;
    const requestId = /\/app\/upload\/([0-9a-f-]{36})#s=([A-Za-z0-9_-]{43})/.exec(link)!;
    // --json for the answer on stdout; without it, the progress and notices on stderr.
    const upload = (to: string, paths: string[], extra: string[] = [], json = true) =>
      tresorAsync([...(json ? ['--json'] : []), 'upload', to, '--from', 'aussen@example.org', '--subject', 'Nachlieferung', '--message', 'Zwei Dateien, eine abgebrochen.', ...extra, ...paths], { cwd: dir, env: { TRESOR_CACERT: env.TRESOR_CACERT! } });
    const keptFile = (rid: string) => join(dir, '.local', 'state', 'tresor', 'uploads', `${rid}.json`);

    // The first 10 MiB get through, then the connection is dead: the command gives up and says what to do.
    const dead = await cuttingProxy(Number(new URL(server.url).port), (_sent, total) => (total > 10 * 1024 * 1024 ? 'dead' : 'go'));
    let cut;
    try {
      cut = await upload(link.replace(server.url, dead.url), [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    } finally {
      await dead.close();
    }
    expect(cut.code).not.toBe(0);
    expect(cut.stderr).toContain('the upload is kept on this machine: run the same command again to go on');
    // Kept for its owner alone (0600 in a 0700 folder): the draft, names, sizes and keys, not the link's secret.
    const file = keptFile(requestId[1]!);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { transferId: string; level: number; files: { name: string; size: number; key: string }[]; bundle?: { key: string } };
    expect(kept).toMatchObject({ level: 4, files: [{ name: 'scan.bin', size: scan.length }, { name: 'nachtrag.txt', size: note.length }] });
    expect(kept.bundle?.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(readFileSync(file, 'utf8')).not.toContain(requestId[2]!);
    const transferDir = transferDirOf(kept.transferId)!;
    const { held, sizes } = await settledSizes(transferDir);
    expect(held.some((n) => n > 8 * 1024 * 1024 && n < scan.length), held.join()).toBe(true);

    // A file left out is asked for by its kept name; another file of that name and size is refused; nothing
    // changes on the server and the kept upload stays.
    const short = await upload(link, [join(folder, 'scan.bin')]);
    expect(short.code).toBe(6);
    expect(short.stderr).toContain(`give these files again: nachtrag.txt (${note.length} bytes)`);
    // A file that was never part of the upload is refused too (it would stay behind unnoticed).
    const extra = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt'), join(dir, 'befund.txt')]);
    expect(extra.code).toBe(6);
    expect(extra.stderr).toContain(`not part of the interrupted transfer: befund.txt (${SECRET_TEXT.length} bytes)`);
    // One upload per link at a time: another one running (this test's process holds the lock) is waited for.
    writeFileSync(`${file}.lock`, String(process.pid));
    const twice = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    expect(twice.code).toBe(5);
    expect(twice.stderr).toContain(`another tresor upload with this link is running (process ${process.pid})`);
    rmSync(`${file}.lock`);
    const wrong = await upload(link, [join(changed, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/scan\.bin is not the file whose upload was interrupted/);
    expect(sizes()).toEqual(held);
    // A kept file others may read is not used.
    chmodSync(file, 0o644);
    const exposed = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    expect(exposed.code).toBe(5);
    expect(exposed.stderr).toMatch(/holds file keys but others may read it \(mode 644\)/);
    chmodSync(file, 0o600);
    const keptCopy = readFileSync(file);

    // The same command again (files in another order): only the rest goes up, counted on the way.
    let counted = 0;
    const counting = await cuttingProxy(Number(new URL(server.url).port), (_sent, total) => ((counted = total), 'go'));
    let resumed;
    try {
      resumed = await upload(link.replace(server.url, counting.url), [join(folder, 'nachtrag.txt'), join(folder, 'scan.bin')], [], false);
    } finally {
      await counting.close();
    }
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('Sent to sender@praxis.test (level 4).');
    expect(resumed.stderr).toContain('2 of 2 file(s) still to upload');
    expect(counted).toBeGreaterThan(scan.length - Math.max(...held));
    expect(counted).toBeLessThan(scan.length + note.length - 8 * 1024 * 1024);
    expect(existsSync(file)).toBe(false);
    const got = cli('sender', ['receive', mailedTransferLink(outbox, 'sender@praxis.test').link, '--out', join(files, 'upload-resumed')], { TRESOR_SECUPASS: 'Absender Schlüssel 99' });
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ subject: 'Nachlieferung', message: 'Zwei Dateien, eine abgebrochen.', level: 4 });
    expect(readFileSync(join(files, 'upload-resumed', 'scan.bin')).equals(scan)).toBe(true);
    expect(readFileSync(join(files, 'upload-resumed', 'nachtrag.txt')).equals(note)).toBe(true);

    // A command that died after sending but before forgetting: run again, it says so and sends nothing more.
    const mails = readdirSync(outbox).length;
    writeFileSync(file, keptCopy, { mode: 0o600 });
    const again = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ id: kept.transferId, alreadySent: true });
    expect(readdirSync(outbox).length).toBe(mails);
    expect(existsSync(file)).toBe(false);
    // --restart does not send a sent upload a second time either.
    writeFileSync(file, keptCopy, { mode: 0o600 });
    const restartSent = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')], ['--restart']);
    expect(restartSent.code, restartSent.stderr).toBe(0);
    expect(JSON.parse(restartSent.stdout)).toMatchObject({ id: kept.transferId, alreadySent: true });
    expect(readdirSync(outbox).length).toBe(mails);
    expect(existsSync(file)).toBe(false);
    // A link that no longer works (closed by the requester): what was kept for it is deleted.
    writeFileSync(file, keptCopy, { mode: 0o600 });
    expect(curl(tokens.sender, 'DELETE', `/api/v1/file-requests/${requestId[1]}`)).toBeLessThan(300);
    const closed = await upload(link, [join(folder, 'scan.bin'), join(folder, 'nachtrag.txt')]);
    expect(closed.code).not.toBe(0);
    expect(closed.stderr).toContain('the upload kept for this link on this machine was deleted');
    expect(existsSync(file)).toBe(false);

    // --restart: a level-1 upload cut off, then given up: its bytes go at once, the files are sent anew.
    const made1 = cli('sender', ['transfer', 'request', '--level', '1']);
    const link1 = (JSON.parse(made1.stdout) as { link: string }).link;
    const rid1 = /\/app\/upload\/([0-9a-f-]{36})#/.exec(link1)![1]!;
    const dead1 = await cuttingProxy(Number(new URL(server.url).port), (_sent, total) => (total > 10 * 1024 * 1024 ? 'dead' : 'go'));
    try {
      expect((await upload(link1.replace(server.url, dead1.url), [join(folder, 'scan.bin')])).code).not.toBe(0);
    } finally {
      await dead1.close();
    }
    const first = (JSON.parse(readFileSync(keptFile(rid1), 'utf8')) as { transferId: string }).transferId;
    await settledSizes(transferDirOf(first)!);
    const restarted = await upload(link1, [join(folder, 'scan.bin')], ['--restart'], false);
    expect(restarted.code, restarted.stderr).toBe(0);
    expect(restarted.stderr).toContain('the interrupted upload was given up');
    expect(transferDirOf(first)).toBeUndefined();
    expect(existsSync(keptFile(rid1))).toBe(false);
    const got1 = cli('sender', ['receive', mailedTransferLink(outbox, 'sender@praxis.test').link, '--out', join(files, 'upload-restarted'), '--email', 'sender@praxis.test']);
    expect(got1.code, got1.stderr).toBe(0);
    expect(readFileSync(join(files, 'upload-restarted', 'scan.bin')).equals(scan)).toBe(true);
  }, 240_000);
});

/**
 * A TLS proxy in front of the test server with the server's own certificate (what a compromised server, or
 * a man in the middle with its key, could send): it passes everything through but rewrites the JSON answer
 * of the requests whose path matches `path`. `dataDir` is the server's, for its certificate and key.
 */
async function rewritingProxy(server: { url: string; dataDir: string }, path: RegExp, rewrite: (answer: unknown) => Promise<unknown>) {
  const pki = join(server.dataDir, 'pki');
  const upstreamPort = Number(new URL(server.url).port);
  const ca = readFileSync(join(pki, 'ca.pem'));
  let rewritten = 0;
  const proxy = createHttpsServer({ key: readFileSync(join(pki, 'server-key.pem')), cert: readFileSync(join(pki, 'server.pem')) }, (req, res) => {
    const forward = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, ca }, (answer) => {
      if (!path.test(req.url ?? '') || (answer.statusCode ?? 500) >= 300) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        void (async () => {
          const text = JSON.stringify(await rewrite(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
          rewritten++;
          const { 'content-length': _length, ...headers } = answer.headers;
          res.writeHead(answer.statusCode!, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
          res.end(text);
        })();
      });
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `https://localhost:${(proxy.address() as { port: number }).port}`,
    rewritten: () => rewritten,
    close: () => new Promise((resolve) => proxy.close(resolve)),
  };
}
