import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalPki } from './pki.js';

// Certificates are inspected with Node's own X.509 parser and the openssl CLI, not with the library
// that wrote them.

let root: string;
let counter = 0;
const freshDir = () => join(root, `pki-${++counter}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tresor-pki-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const DAY_MS = 24 * 60 * 60 * 1000;
const LOOPBACK_SAN = 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1';

async function certificate(path: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(path));
}

function opensslText(path: string): string {
  return execFileSync('openssl', ['x509', '-in', path, '-noout', '-text'], { encoding: 'utf8' });
}

/** A server certificate made by the openssl CLI into `dir`, covering the loopback names, signed by `signer`. */
function opensslServerCert(dir: string, days: number, signer: 'local-ca' | 'self' | { cert: string; key: string }): void {
  const issuer = signer === 'local-ca' ? { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') } : signer;
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(dir, 'server-key.pem'), '-out', join(dir, 'server.pem'), '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-days', String(days),
      ...(issuer === 'self' ? [] : ['-CA', issuer.cert, '-CAkey', issuer.key]),
    ],
    { stdio: 'pipe' },
  );
}

describe('ensureLocalPki: the CA', () => {
  it('is a self-signed P-256 CA, critical CA:true pathlen 0, critical keyCertSign+cRLSign, ten years, 16-byte serial', async () => {
    const dir = freshDir();
    const pki = await ensureLocalPki(dir, []);
    const ca = await certificate(pki.caCertPath);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toMatch(/^CN=Tresor local CA [0-9a-f]{8}$/);
    expect(ca.issuer).toBe(ca.subject);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/); // positive, exactly 16 bytes
    const years = (Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / (365.25 * DAY_MS);
    expect(years).toBeCloseTo(10, 1);

    const text = opensslText(pki.caCertPath);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
  });

  it('two directories get two different CAs', async () => {
    const a = await certificate((await ensureLocalPki(freshDir(), [])).caCertPath);
    const b = await certificate((await ensureLocalPki(freshDir(), [])).caCertPath);
    expect(a.subject).not.toBe(b.subject);
    expect(a.serialNumber).not.toBe(b.serialNumber);
  });

  it('refuses to replace a CA certificate whose key is missing, and creates a new CA when ca.pem is gone', async () => {
    const dir = freshDir();
    const first = await ensureLocalPki(dir, []);
    const caPem = await readFile(first.caCertPath, 'utf8');
    await copyFile(join(dir, 'ca-key.pem'), join(root, 'saved-ca-key.pem'));
    await unlink(join(dir, 'ca-key.pem'));
    await expect(ensureLocalPki(dir, [])).rejects.toThrow(/ca-key\.pem is missing/);
    expect(await readFile(first.caCertPath, 'utf8')).toBe(caPem);

    await copyFile(join(root, 'saved-ca-key.pem'), join(dir, 'ca-key.pem'));
    await unlink(first.caCertPath);
    const second = await ensureLocalPki(dir, []);
    expect([second.createdCa, second.createdCert]).toEqual([true, true]);
    expect(await readFile(second.caCertPath, 'utf8')).not.toBe(caPem);
  });
});

describe('ensureLocalPki: the server certificate', () => {
  it('has the TLS server profile: P-256, critical digitalSignature, serverAuth, CA:false, 397 days from one hour ago', async () => {
    const started = Date.now();
    const pki = await ensureLocalPki(freshDir(), ['tresor.example.org']);
    const cert = await certificate(pki.certPath);
    const ca = await certificate(pki.caCertPath);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // Node reports the extended key usage here
    expect(cert.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
    // X.509 times have one-second resolution.
    expect(Math.abs(Date.parse(cert.validFrom) - (started - 60 * 60 * 1000))).toBeLessThan(5_000);
    expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(397 * DAY_MS);
    expect(cert.checkHost('tresor.example.org')).toBe('tresor.example.org');
    expect(cert.checkIP('::1')).toBe('::1');

    const text = opensslText(pki.certPath);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
  });

  it('puts IP literals into IP SANs, IDNs as A-labels, and normalises case, trailing dots and duplicates', async () => {
    const pki = await ensureLocalPki(freshDir(), ['Tresor.Example.ORG.', 'tresor.example.org', '192.0.2.7', '[2001:DB8::1]', 'bücher.example', '*.apps.example']);
    expect((await certificate(pki.certPath)).subjectAltName).toBe(
      'DNS:tresor.example.org, DNS:xn--bcher-kva.example, DNS:*.apps.example, DNS:localhost, ' +
        'IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
  });

  it.each([['exa mple.org'], ['-bad.example'], ['a..b'], ['foo.*.example'], ['']])('rejects the host name %j', async (name) => {
    await expect(ensureLocalPki(freshDir(), [name])).rejects.toThrow(/not a valid host name/);
  });

  it('re-issues when the certificate expires within 30 days, keeps one that is valid longer', async () => {
    const dir = freshDir();
    await ensureLocalPki(dir, []);
    opensslServerCert(dir, 60, 'local-ca');
    const longLived = await readFile(join(dir, 'server.pem'), 'utf8');
    expect((await ensureLocalPki(dir, [])).createdCert).toBe(false);
    expect(await readFile(join(dir, 'server.pem'), 'utf8')).toBe(longLived);

    opensslServerCert(dir, 20, 'local-ca');
    const again = await ensureLocalPki(dir, []);
    expect([again.createdCa, again.createdCert]).toEqual([false, true]);
    expect(Date.parse((await certificate(again.certPath)).validTo) - Date.now()).toBeGreaterThan(390 * DAY_MS);
  });

  it('re-issues a certificate that this CA did not sign, whose key does not match, or that is missing', async () => {
    const dir = freshDir();
    const pki = await ensureLocalPki(dir, []);
    const ca = await certificate(pki.caCertPath);

    opensslServerCert(dir, 60, 'self');
    expect((await ensureLocalPki(dir, [])).createdCert).toBe(true);
    expect((await certificate(pki.certPath)).verify(ca.publicKey)).toBe(true);

    // Another CA under the very same name: only the signature tells them apart.
    const impostor = { cert: join(root, 'impostor-ca.pem'), key: join(root, 'impostor-ca-key.pem') };
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', impostor.key,
      '-out', impostor.cert, '-subj', `/${ca.subject}`, '-days', '60',
      '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign',
    ], { stdio: 'pipe' });
    opensslServerCert(dir, 60, impostor);
    expect((await certificate(pki.certPath)).issuer).toBe(ca.subject);
    expect((await ensureLocalPki(dir, [])).createdCert).toBe(true);
    expect((await certificate(pki.certPath)).verify(ca.publicKey)).toBe(true);

    await copyFile(join(dir, 'ca-key.pem'), pki.keyPath); // a valid key, but not the certificate's
    expect((await ensureLocalPki(dir, [])).createdCert).toBe(true);
    expect((await ensureLocalPki(dir, [])).createdCert).toBe(false);

    await unlink(pki.certPath);
    const after = await ensureLocalPki(dir, []);
    expect([after.createdCa, after.createdCert]).toEqual([false, true]);
    expect((await certificate(pki.certPath)).subjectAltName).toBe(LOOPBACK_SAN);
  });
});
