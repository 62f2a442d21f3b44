import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forgetUpload, keepUpload, keptUploadsDir, readKeptUpload, type KeptUpload } from './kept-upload.js';

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
});
