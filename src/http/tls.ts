import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { createSecureContext } from 'node:tls';

/**
 * TLS 1.3 cipher suites (RFC 8446 names), BSI TR-02102-2 recommendations for TLS 1.3: AES-GCM only.
 * ChaCha20-Poly1305 is not recommended by the TR; the AES-CCM suites it also allows are left out
 * (OpenSSL does not enable them by default, and no mainstream client needs them).
 */
export const TLS13_CIPHER_SUITES = ['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256'] as const;

/**
 * TLS 1.2 cipher suites (OpenSSL names), a stricter subset of BSI TR-02102-2's TLS 1.2 recommendations:
 * ephemeral ECDH for forward secrecy and AEAD (AES-GCM) only — no CBC (which the TR still allows), no
 * static RSA key exchange, no ChaCha20. The RSA-signed suites stay for operators who bring an RSA
 * certificate; their key exchange is still ECDHE.
 */
export const TLS12_CIPHER_SUITES = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256',
] as const;

/**
 * Key exchange groups after BSI TR-02102-2, in order of preference. X25519/X448 are not among the TR's
 * recommended groups. The brainpool curves are offered only when the local OpenSSL knows them:
 * `brainpoolP*r1` are the TLS 1.2 code points (RFC 7027), `brainpoolP*r1tls13` the TLS 1.3 ones
 * (RFC 8734, OpenSSL ≥ 3.2).
 */
const CANDIDATE_GROUPS = ['P-384', 'P-256', 'brainpoolP384r1tls13', 'brainpoolP256r1tls13', 'brainpoolP384r1', 'brainpoolP256r1'] as const;

/**
 * Handshake signature schemes after BSI TR-02102-2: ECDSA or RSA (PSS preferred) with SHA-2 of at least
 * 256 bits; SHA-1 and SHA-224 are refused. In TLS 1.3 OpenSSL uses only the PSS and ECDSA
 * entries for the handshake itself.
 */
const SIGNATURE_ALGORITHMS = [
  'ECDSA+SHA384',
  'ECDSA+SHA256',
  'ECDSA+SHA512',
  'rsa_pss_rsae_sha384',
  'rsa_pss_rsae_sha256',
  'rsa_pss_rsae_sha512',
  'rsa_pss_pss_sha384',
  'rsa_pss_pss_sha256',
  'rsa_pss_pss_sha512',
  'RSA+SHA384',
  'RSA+SHA256',
  'RSA+SHA512',
] as const;

let supportedGroups: string[] | undefined;

/** The candidate groups this process's OpenSSL accepts, probed once (an unknown name fails the whole list). */
export function tlsKeyExchangeGroups(): string[] {
  supportedGroups ??= CANDIDATE_GROUPS.filter((group) => {
    try {
      createSecureContext({ ecdhCurve: group });
      return true;
    } catch {
      return false;
    }
  });
  return [...supportedGroups];
}

/** `https.createServer` / Fastify `https` options with every field of the profile present. */
export type TlsServerOptions = HttpsServerOptions &
  Required<Pick<HttpsServerOptions, 'cert' | 'key' | 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve' | 'sigalgs' | 'honorCipherOrder' | 'secureOptions'>>;

/**
 * TLS profile after BSI TR-02102-2: TLS 1.2 and 1.3 only, AES-GCM with ECDHE, NIST and brainpool
 * curves, SHA-2 signatures, no renegotiation.
 */
export function tlsServerOptions(files: { certPath: string; keyPath: string }): TlsServerOptions {
  return { ...readTlsFiles(files), ...tlsProfile() };
}

/** The profile without key material, e.g. for a server that loads certificates itself. */
export function tlsProfile(): Omit<TlsServerOptions, 'cert' | 'key'> {
  return {
    // BSI TR-02102-2: TLS 1.2 and TLS 1.3 only; SSL, TLS 1.0 and TLS 1.1 are not used.
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    // Node splits this string: names starting with "TLS_" go to SSL_CTX_set_ciphersuites (TLS 1.3),
    // the rest to SSL_CTX_set_cipher_list (TLS 1.2). The 1.3 suites must be listed: without any "TLS_"
    // name Node leaves OpenSSL's default 1.3 set on, TLS_CHACHA20_POLY1305_SHA256 included. OpenSSL
    // also skips unknown "TLS_" names silently, so the tests check each suite by handshake.
    ciphers: [...TLS13_CIPHER_SUITES, ...TLS12_CIPHER_SUITES].join(':'),
    ecdhCurve: tlsKeyExchangeGroups().join(':'),
    sigalgs: SIGNATURE_ALGORITHMS.join(':'),
    // The server's preference order decides (SSL_OP_CIPHER_SERVER_PREFERENCE), not the client's.
    honorCipherOrder: true,
    // BSI TR-02102-2 permits only secure renegotiation (RFC 5746); an HTTP API without client
    // certificates needs none, so none is allowed. (TLS 1.3 has no renegotiation.)
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

/** Reads certificate chain and private key (PEM); a missing file fails at start, not at the first handshake. */
export function readTlsFiles(files: { certPath: string; keyPath: string }): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(files.certPath), key: readFileSync(files.keyPath) };
}

/** One line for logs and the README. */
export const TLS_PROFILE_DESCRIPTION =
  'BSI TR-02102-2: TLS 1.2/1.3 only; TLS 1.3 AES-256-GCM/AES-128-GCM; TLS 1.2 ECDHE with AES-GCM (ECDSA or RSA certificate); ' +
  'groups P-384, P-256 (brainpool when OpenSSL supports it); SHA-2 signatures; no renegotiation';
