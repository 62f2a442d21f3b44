import { createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { domainToASCII } from 'node:url';
import type { X509Certificate } from '@peculiar/x509';

/** Files of the self-generated local PKI (all PEM). */
export interface PkiFiles {
  caCertPath: string;
  certPath: string;
  keyPath: string;
}

// @peculiar/x509 registers its algorithms in a tsyringe container, which needs the Reflect metadata API
// while it is evaluated: load the polyfill first.
await import('reflect-metadata');
const x509 = await import('@peculiar/x509');
// Node's WebCrypto is the only crypto provider: no other crypto library is involved.
x509.cryptoProvider.set(webcrypto);

// ECDSA on P-256 with SHA-256 (FIPS 186-4, RFC 5758 §3.2), a curve and hash BSI TR-02102-1 accepts.
const EC_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_VALIDITY_MS = 10 * 365 * DAY_MS + 3 * DAY_MS; // ten years including leap days
// CA/Browser Forum Baseline Requirements §6.3.2 cap leaf certificates at 398 days; 397 stays below every
// client's validity policy.
const SERVER_VALIDITY_MS = 397 * DAY_MS;
// Tolerates clients whose clocks run a little behind.
const SERVER_BACKDATE_MS = 60 * 60 * 1000;
const RENEW_BEFORE_MS = 30 * DAY_MS;

const ALWAYS_DNS = ['localhost'];
const ALWAYS_IP = ['127.0.0.1', '::1'];

/**
 * Makes sure `dir` holds a local CA (`ca.pem`, `ca-key.pem`) and a server certificate signed by it
 * (`server.pem`, `server-key.pem`) that covers `hostnames`, `localhost`, 127.0.0.1 and ::1.
 *
 * An existing CA is always reused, so a CA that people already trust stays valid. The server
 * certificate is re-issued when it is missing, not signed by this CA, does not match its key,
 * expires within 30 days or does not cover every requested name.
 */
export async function ensureLocalPki(
  dir: string,
  hostnames: string[],
): Promise<PkiFiles & { createdCa: boolean; createdCert: boolean }> {
  const files = {
    caCertPath: join(dir, 'ca.pem'),
    caKeyPath: join(dir, 'ca-key.pem'),
    certPath: join(dir, 'server.pem'),
    keyPath: join(dir, 'server-key.pem'),
  };
  const wanted = subjectAltNames(hostnames);
  await mkdir(dir, { recursive: true, mode: 0o700 });

  let ca = await loadCa(files.caCertPath, files.caKeyPath);
  const createdCa = ca === undefined;
  if (ca === undefined) {
    ca = await createCa();
    // The key is written before the certificate: a crash in between leaves no ca.pem, and the next
    // start creates a fresh CA instead of trusting a certificate without its key.
    await writeAtomically(files.caKeyPath, await privateKeyPem(ca.keys.privateKey), 0o600);
    await writeAtomically(files.caCertPath, ca.cert.toString('pem'), 0o644);
  }

  const now = new Date();
  const reusable = !createdCa && (await serverCertIsUsable(files.certPath, files.keyPath, ca.cert, wanted, now));
  if (!reusable) {
    const server = await issueServerCert(ca, wanted, now);
    await writeAtomically(files.keyPath, await privateKeyPem(server.privateKey), 0o600);
    await writeAtomically(files.certPath, server.cert.toString('pem'), 0o644);
  }

  return { caCertPath: files.caCertPath, certPath: files.certPath, keyPath: files.keyPath, createdCa, createdCert: !reusable };
}

/**
 * A private PKI for mutual TLS (the cipher service): `ensureLocalPki` in `dir` (its own CA, never the
 * HTTPS one, so no web certificate can ever authenticate to it) plus a client certificate
 * (`client.pem`, `client-key.pem`, extended key usage clientAuth only) for the servers that call it.
 * An existing, valid client certificate is kept.
 */
export async function ensureMutualTlsPki(
  dir: string,
  hostnames: string[],
): Promise<PkiFiles & { clientCertPath: string; clientKeyPath: string; createdCa: boolean }> {
  const server = await ensureLocalPki(dir, hostnames);
  const clientCertPath = join(dir, 'client.pem');
  const clientKeyPath = join(dir, 'client-key.pem');
  const ca = await loadCa(server.caCertPath, join(dir, 'ca-key.pem'));
  if (ca === undefined) throw new Error(`the CA in ${dir} vanished while it was being used`);
  const now = new Date();
  const keep = !server.createdCa && (await serverCertIsUsable(clientCertPath, clientKeyPath, ca.cert, { dns: [], ip: [] }, now));
  if (!keep) {
    const client = await issueServerCert(ca, { dns: ['tresor-cipher-client'], ip: [] }, now, 'client');
    await writeAtomically(clientKeyPath, await privateKeyPem(client.privateKey), 0o600);
    await writeAtomically(clientCertPath, client.cert.toString('pem'), 0o644);
  }
  return { caCertPath: server.caCertPath, certPath: server.certPath, keyPath: server.keyPath, clientCertPath, clientKeyPath, createdCa: server.createdCa };
}

interface LocalCa {
  cert: X509Certificate;
  keys: { privateKey: webcrypto.CryptoKey };
}

interface AltNames {
  dns: string[];
  ip: string[];
}

async function loadCa(certPath: string, keyPath: string): Promise<LocalCa | undefined> {
  const certPem = await readIfExists(certPath);
  if (certPem === undefined) return undefined;
  const keyPem = await readIfExists(keyPath);
  if (keyPem === undefined) {
    throw new Error(
      `${certPath} exists but its private key ${keyPath} is missing: restore the key, or delete ${certPath} ` +
        'to create a new local CA (clients that trusted the old one must then trust the new one)',
    );
  }
  const cert = new x509.X509Certificate(certPem);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), EC_KEY_ALGORITHM, false, ['sign']);
  if (!sameKeyPair(keyPem, cert)) {
    throw new Error(`${keyPath} is not the private key of ${certPath}: restore the matching pair or delete both`);
  }
  return { cert, keys: { privateKey } };
}

async function createCa(): Promise<LocalCa & { keys: webcrypto.CryptoKeyPair }> {
  const keys = await webcrypto.subtle.generateKey(EC_KEY_ALGORITHM, true, ['sign', 'verify']);
  const notBefore = new Date(Date.now() - SERVER_BACKDATE_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`Tresor local CA ${randomBytes(4).toString('hex')}`] }],
    notBefore,
    notAfter: new Date(notBefore.getTime() + CA_VALIDITY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      // RFC 5280 §4.2.1.9: a CA that signs end-entity certificates only.
      new x509.BasicConstraintsExtension(true, 0, true),
      // RFC 5280 §4.2.1.3
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

async function issueServerCert(
  ca: LocalCa,
  names: AltNames,
  now: Date,
  purpose: 'server' | 'client' = 'server',
): Promise<{ cert: X509Certificate; privateKey: webcrypto.CryptoKey }> {
  const keys = await webcrypto.subtle.generateKey(EC_KEY_ALGORITHM, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - SERVER_BACKDATE_MS);
  // A certificate must not outlive its issuer (RFC 5280 §6.1.3 checks every certificate in the path).
  const notAfter = new Date(Math.min(notBefore.getTime() + SERVER_VALIDITY_MS, ca.cert.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [names.dns[0] ?? 'localhost'] }],
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // RFC 5480 §3 / RFC 8813: an ECDSA key for TLS signs; it never enciphers.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      // A client certificate is good for client authentication only, a server certificate for server
      // authentication only: OpenSSL checks the purpose, so neither can stand in for the other.
      new x509.ExtendedKeyUsageExtension([purpose === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      // RFC 6125 §6.4.4: clients match names against the SAN only.
      ...(purpose === 'server'
        ? [
            new x509.SubjectAlternativeNameExtension([
              ...names.dns.map((value) => ({ type: 'dns' as const, value })),
              ...names.ip.map((value) => ({ type: 'ip' as const, value })),
            ]),
          ]
        : []),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
  if (!(await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }))) {
    throw new Error(`the issued ${purpose} certificate does not verify against the local CA`);
  }
  return { cert, privateKey: keys.privateKey };
}

async function serverCertIsUsable(certPath: string, keyPath: string, caCert: X509Certificate, wanted: AltNames, now: Date): Promise<boolean> {
  const certPem = await readIfExists(certPath);
  const keyPem = await readIfExists(keyPath);
  if (certPem === undefined || keyPem === undefined) return false;
  let cert: X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
    if (!sameKeyPair(keyPem, cert)) return false;
  } catch {
    return false; // unreadable: issue a new one
  }
  if (cert.notBefore.getTime() > now.getTime()) return false;
  if (cert.notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS) return false;
  if (cert.issuer !== caCert.subject) return false;
  if (!(await cert.verify({ publicKey: caCert.publicKey, signatureOnly: true }))) return false;
  const present = certAltNames(cert);
  return wanted.dns.every((name) => present.dns.has(name)) && wanted.ip.every((ip) => present.ip.has(ip));
}

function certAltNames(cert: X509Certificate): { dns: Set<string>; ip: Set<string> } {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const dns = new Set<string>();
  const ip = new Set<string>();
  for (const name of san?.names.items ?? []) {
    if (name.type === 'dns') dns.add(name.value.toLowerCase());
    if (name.type === 'ip') ip.add(normalizeIp(name.value));
  }
  return { dns, ip };
}

/** Requested names plus the loopback names, normalised, de-duplicated; IP literals become IP SANs. */
function subjectAltNames(hostnames: string[]): AltNames {
  const dns = new Set<string>();
  const ip = new Set<string>();
  for (const raw of [...hostnames, ...ALWAYS_DNS, ...ALWAYS_IP]) {
    const trimmed = raw.trim().replace(/^\[(.*)\]$/, '$1');
    if (isIP(trimmed) !== 0) {
      ip.add(normalizeIp(trimmed));
      continue;
    }
    dns.add(normalizeDnsName(trimmed));
  }
  return { dns: [...dns], ip: [...ip] };
}

// RFC 5280 §4.2.1.6 (dNSName in preferred name syntax, IDNs as A-labels) and RFC 6125 §6.4.3 (a
// wildcard only as the whole left-most label).
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
function normalizeDnsName(name: string): string {
  const withoutDot = name.replace(/\.$/, '');
  const wildcard = withoutDot.startsWith('*.');
  const ascii = domainToASCII(wildcard ? withoutDot.slice(2) : withoutDot);
  const labels = ascii.split('.');
  if (ascii === '' || ascii.length > 253 || !labels.every((label) => DNS_LABEL.test(label))) {
    throw new Error(`"${name}" is not a valid host name for the TLS certificate: use a DNS name such as tresor.example.org or an IP address`);
  }
  return wildcard ? `*.${ascii}` : ascii;
}

function normalizeIp(ip: string): string {
  return isIP(ip) === 6 ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

/** 16 random bytes, first bit cleared so the DER INTEGER stays positive (RFC 5280 §4.1.2.2). */
function randomSerial(): string {
  const serial = randomBytes(16);
  // The second-highest bit is set so the encoding is always exactly 16 bytes (no leading zero octet).
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial.toString('hex');
}

function sameKeyPair(privateKeyPem: string, cert: X509Certificate): boolean {
  const fromKey = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'der' });
  return fromKey.equals(Buffer.from(cert.publicKey.rawData));
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  // PKCS#8 (RFC 5208), PEM label "PRIVATE KEY" (RFC 7468 §10).
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Writes to a temporary file with the final mode, then renames: readers never see a half-written key. */
async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, content.endsWith('\n') ? content : `${content}\n`, { mode, flag: 'wx' });
    await chmod(temporary, mode); // the umask may have removed bits; a key must never be wider than 0600
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

