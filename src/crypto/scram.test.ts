import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { scramVerifier } from './scram.js';

/**
 * The verifier must let PostgreSQL check a real SCRAM-SHA-256 login. Checked against the exchange of
 * RFC 7677 §3 (user "user", password "pencil"): the server side of that exchange, run with our verifier,
 * accepts the RFC's client proof and produces the RFC's server signature.
 */
describe('scramVerifier', () => {
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const authMessage = [
    'n=user,r=rOprNGfwEbeRWgbNEkqO',
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  ].join(',');
  const clientProof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');

  const serverCheck = (verifier: string) => {
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
    expect(m).not.toBeNull();
    const storedKey = Buffer.from(m![3]!, 'base64');
    const serverKey = Buffer.from(m![4]!, 'base64');
    const clientSignature = createHmac('sha256', storedKey).update(authMessage).digest();
    const clientKey = Buffer.from(clientProof.map((b, i) => b ^ clientSignature[i]!));
    return {
      accepted: createHash('sha256').update(clientKey).digest().equals(storedKey),
      serverSignature: createHmac('sha256', serverKey).update(authMessage).digest('base64'),
    };
  };

  it('accepts the RFC 7677 client proof for the right password and gives the RFC server signature', () => {
    const verifier = scramVerifier('pencil', 4096, salt);
    expect(verifier.startsWith('SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$')).toBe(true);
    expect(serverCheck(verifier)).toEqual({ accepted: true, serverSignature: '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=' });
  });

  it('refuses that proof for another password, and salts every verifier anew', () => {
    expect(serverCheck(scramVerifier('pencil2', 4096, salt)).accepted).toBe(false);
    expect(scramVerifier('pencil')).not.toBe(scramVerifier('pencil'));
  });
});
