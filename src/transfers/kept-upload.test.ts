import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forgetUpload, keepUpload, keptUploadsDir, lockUpload, readKeptUpload, type KeptUpload } from './kept-upload.js';

describe('the upload `tresor upload` keeps between runs', () => {
  const root = mkdtempSync(join(tmpdir(), 'tresor-kept-'));
  const dir = join(root, 'state', 'tresor', 'uploads');
  const requestId = '0a1b2c3d-0000-4000-8000-00000000abcd';
  const kept: KeptUpload = {
    version: 1,
    requestId,
    transferId: '0a1b2c3d-0000-4000-8000-00000000beef',
    level: 3,
    recipientId: '0a1b2c3d-0000-4000-8000-00000000cafe',
    files: [{ id: '0a1b2c3d-0000-4000-8000-000000000001', name: 'befund.pdf', size: 1234, key: 'A'.repeat(43) }],
    createdAt: '2026-12-03T12:00:00.000Z',
  };
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('lives under XDG_STATE_HOME (absolute only) or ~/.local/state', () => {
    expect(keptUploadsDir({ XDG_STATE_HOME: '/srv/state', HOME: '/home/a' })).toBe('/srv/state/tresor/uploads');
    expect(keptUploadsDir({ XDG_STATE_HOME: 'relative', HOME: '/home/a' })).toBe('/home/a/.local/state/tresor/uploads');
    expect(keptUploadsDir({ HOME: '/home/a' })).toBe('/home/a/.local/state/tresor/uploads');
  });

  it('is written for its owner alone and read back; forgotten, it is gone', async () => {
    expect(await readKeptUpload(dir, requestId)).toBeUndefined();
    await keepUpload(dir, kept);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, `${requestId}.json`)).mode & 0o777).toBe(0o600);
    expect(await readKeptUpload(dir, requestId)).toEqual(kept);
    await forgetUpload(dir, requestId);
    expect(await readKeptUpload(dir, requestId)).toBeUndefined();
  });

  it('refuses a file others may read, one that is not a kept upload of this link, and an id that is no id', async () => {
    await keepUpload(dir, kept);
    const file = join(dir, `${requestId}.json`);
    chmodSync(file, 0o640);
    await expect(readKeptUpload(dir, requestId)).rejects.toThrow(/others may read it \(mode 640\)/);
    chmodSync(file, 0o600);
    for (const bad of ['{not json', JSON.stringify({ ...kept, requestId: '0a1b2c3d-0000-4000-8000-000000000000' }), JSON.stringify({ ...kept, files: [{ ...kept.files[0], key: 'short' }] }), JSON.stringify({ ...kept, level: 5 })]) {
      writeFileSync(file, bad);
      await expect(readKeptUpload(dir, requestId)).rejects.toThrow(/is not a kept upload of this link: delete it to start over/);
    }
    await expect(readKeptUpload(dir, '../../etc/passwd')).rejects.toThrow(/not a request id/);
  });

  it('reads no kept file through a symbolic link and keeps none in a folder that is a link', async () => {
    const elsewhere = join(root, 'elsewhere.json');
    writeFileSync(elsewhere, JSON.stringify(kept), { mode: 0o600 });
    const file = join(dir, `${requestId}.json`);
    rmSync(file, { force: true });
    symlinkSync(elsewhere, file);
    await expect(readKeptUpload(dir, requestId)).rejects.toThrow(/is a symbolic link: refusing to read file keys through it/);
    rmSync(file);
    const real = join(root, 'real-folder');
    mkdirSync(real);
    const linked = join(root, 'linked-folder');
    symlinkSync(real, linked);
    await expect(keepUpload(linked, kept)).rejects.toThrow(/is not a folder \(a symbolic link\?\)/);
    expect(readdirSync(real)).toEqual([]);
  });

  // Only root can give a file to another user; CI and this machine run the suite as root.
  it.skipIf(process.getuid?.() !== 0)("refuses a kept file and a folder that belong to someone else", async () => {
    await keepUpload(dir, kept);
    const file = join(dir, `${requestId}.json`);
    chownSync(file, 4242, 4242);
    await expect(readKeptUpload(dir, requestId)).rejects.toThrow(/is not your file \(owner 4242\)/);
    rmSync(file);
    const foreign = join(root, 'foreign-folder');
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, 4242, 4242);
    await expect(keepUpload(foreign, kept)).rejects.toThrow(/is not your folder \(owner 4242\)/);
    expect(readdirSync(foreign)).toEqual([]);
  });

  it('forgets the temporary files a crash left, and nothing of other links', async () => {
    await keepUpload(dir, kept);
    writeFileSync(join(dir, `${requestId}.json.0123456789abcdef.tmp`), '{', { mode: 0o600 });
    const other = '0a1b2c3d-0000-4000-8000-00000000ffff';
    await keepUpload(dir, { ...kept, requestId: other });
    await forgetUpload(dir, requestId);
    expect(readdirSync(dir).sort()).toEqual([`${other}.json`]);
    await forgetUpload(dir, other);
  });

  it('lets one upload per link run at a time; a lock of a process that is gone is taken over', async () => {
    const release = await lockUpload(dir, requestId);
    await expect(lockUpload(dir, requestId)).rejects.toThrow(new RegExp(`another tresor upload with this link is running \\(process ${process.pid}\\)`));
    await release();
    // A process that has ended: its id is free (not reused within this test's moment).
    const ended = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    writeFileSync(join(dir, `${requestId}.json.lock`), ended);
    const again = await lockUpload(dir, requestId);
    await again();
    expect(existsSync(join(dir, `${requestId}.json.lock`))).toBe(false);
  });
});
