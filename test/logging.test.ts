import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/ops/logger.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger('info', stream), text: () => lines.join('') };
}

describe('log redaction', () => {
  const secrets = {
    password: 'Correct-Horse-Battery-9',
    token: 'tok_5f1e2d3c4b5a69788796a5b4c3d2e1f0',
    email: 'erika.mustermann@example.de',
    name: 'Erika Mustermann',
    phone: '+49 30 1234567',
    iban: 'DE89370400440532013000',
    privateKey: '-----BEGIN PRIVATE KEY-----abc',
    oneTimePassword: 'hjK7mNp2QrSt4VwXyZ3a',
  };

  it('censors passwords, tokens, keys and personal fields at the top level and nested', () => {
    const { log, text } = capture();
    log.info(secrets, 'top level');
    log.info({ body: secrets }, 'request body');
    log.info({ account: { profile: secrets } }, 'two levels');
    log.info({ req: { headers: { authorization: `Bearer ${secrets.token}`, cookie: `__Host-tresor_session=${secrets.token}` } } }, 'headers');
    const out = text();
    for (const value of Object.values(secrets)) expect(out).not.toContain(value);
    expect(out).toContain('[redacted]');
    expect(out.split('\n').filter(Boolean)).toHaveLength(4);
  });

  it('keeps harmless fields', () => {
    const { log, text } = capture();
    log.info({ tenantId: 'a0b1c2', status: 'active' }, 'tenant resumed');
    expect(text()).toContain('a0b1c2');
    expect(text()).toContain('tenant resumed');
  });
});
