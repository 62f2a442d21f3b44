import { dictionary } from '@zxcvbn-ts/language-common';
import { ValidationError } from '../shared/errors.js';

/**
 * Password rules (ASVS 5.0 §6.2, NIST SP 800-63B-4 §3.1.1.2): at least 12 characters, up to 128, any
 * characters, no composition rules, no expiry — but refusal of common passwords (the 49,233-entry list
 * of zxcvbn-ts, MIT, shipped as a dependency) and of passwords built from the account's own login.
 * Tenants may add character classes, a maximum age and a history (identity issue; not yet configurable).
 */
export interface PasswordPolicy {
  minLength: number;
  maxLength: number;
}

export const PLATFORM_PASSWORD_POLICY: PasswordPolicy = { minLength: 12, maxLength: 128 };

const COMMON = new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()));
export const COMMON_PASSWORD_COUNT = COMMON.size;

/** Code points, not UTF-16 units: "ä" counts once however it is typed (NFC). */
const lengthOf = (value: string) => [...value.normalize('NFC')].length;

/** Returns the problems with a proposed password, each saying what to fix; empty when it is acceptable. */
export function passwordProblems(password: string, context: { login: string }, policy = PLATFORM_PASSWORD_POLICY): string[] {
  const problems: string[] = [];
  const length = lengthOf(password);
  if (length < policy.minLength) problems.push(`password must be at least ${policy.minLength} characters long (it has ${length})`);
  if (length > policy.maxLength) problems.push(`password must be at most ${policy.maxLength} characters long`);
  const lower = password.normalize('NFC').toLowerCase();
  // Also catch the usual decorations of a common password: "Password2026!" is "password".
  const core = lower.replace(/[\d\W_]+$/u, '').replace(/^[\d\W_]+/u, '');
  if (COMMON.has(lower) || (core.length >= 4 && COMMON.has(core))) {
    problems.push('password is on the list of commonly used passwords; choose a longer phrase of unrelated words');
  }
  const login = context.login.normalize('NFC').toLowerCase();
  const localPart = login.split('@')[0] ?? login;
  if ((localPart.length >= 3 && lower.includes(localPart)) || lower === login) {
    problems.push('password must not contain your login or e-mail address');
  }
  return problems;
}

export function assertAcceptablePassword(password: string, context: { login: string }, policy = PLATFORM_PASSWORD_POLICY): void {
  const problems = passwordProblems(password, context, policy);
  if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });
}
