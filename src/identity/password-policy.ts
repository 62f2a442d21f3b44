import { dictionary } from '@zxcvbn-ts/language-common';
import { EXTERNAL_ROLES, TENANT_ROLES, type AccountRole } from '../access/index.js';
import { ValidationError } from '../shared/errors.js';

/**
 * Password rules (ASVS 5.0 §6.2, NIST SP 800-63B-4 §3.1.1.2). The platform default: at least 12
 * characters, up to 128, any characters, no composition rules, no expiry — but refusal of common and
 * breached passwords (the 49,233-entry list of zxcvbn-ts, MIT, shipped as a dependency) and of
 * passwords built from the account's own login or e-mail address.
 *
 * Because customers ask for it (seed 001), a tenant may tighten this: a longer minimum, character
 * classes, a maximum age (an expired password must be changed before anything else), a history of
 * refused earlier passwords, and roles that must use a second factor.
 */
export type CharacterClass = 'lower' | 'upper' | 'digit' | 'symbol';
export const CHARACTER_CLASSES: readonly CharacterClass[] = ['lower', 'upper', 'digit', 'symbol'];

export interface PasswordPolicy {
  minLength: number;
  maxLength: number;
  requiredClasses: CharacterClass[];
  /** Days after which a password must be changed; null: no expiry (the NIST default). */
  maxAgeDays: number | null;
  /** How many earlier passwords are refused (0: none). */
  historyCount: number;
  /** Roles that must set up and use a second factor. */
  secondFactorRoles: AccountRole[];
}

export const PLATFORM_PASSWORD_POLICY: Readonly<PasswordPolicy> = Object.freeze({
  minLength: 12,
  maxLength: 128,
  requiredClasses: [],
  maxAgeDays: null,
  historyCount: 0,
  secondFactorRoles: [],
});

/** Bounds a tenant policy must stay within: it can only be stricter than the platform default. */
export const POLICY_BOUNDS = { minLength: [12, 64], maxAgeDays: [1, 3650], historyCount: [0, 24] } as const;
export const POLICY_ROLES: readonly AccountRole[] = [...TENANT_ROLES, ...EXTERNAL_ROLES];

const COMMON = new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()));
export const COMMON_PASSWORD_COUNT = COMMON.size;

/** Code points, not UTF-16 units: "ä" counts once however it is typed (NFC). */
const lengthOf = (value: string) => [...value.normalize('NFC')].length;

const CLASS_TESTS: Record<CharacterClass, { test: RegExp; name: string }> = {
  lower: { test: /\p{Ll}/u, name: 'a lower-case letter' },
  upper: { test: /\p{Lu}/u, name: 'an upper-case letter' },
  digit: { test: /\p{Nd}/u, name: 'a digit' },
  symbol: { test: /[^\p{L}\p{Nd}]/u, name: 'a symbol or space' },
};

/**
 * One problem with a proposed password: a stable `code` (clients translate it, e.g. the web app's
 * `problem.<code>` texts), its parameters, and the English `message` for scripts and logs.
 */
export const PASSWORD_PROBLEM_CODES = ['too-short', 'too-long', 'needs-class', 'common', 'contains-login', 'contains-context', 'in-history'] as const;

export interface PasswordProblem {
  code: (typeof PASSWORD_PROBLEM_CODES)[number];
  params: Record<string, string | number>;
  message: string;
}

/** The problems with a proposed password, each with its code and what to fix; empty when it is acceptable. */
export function passwordProblemList(password: string, context: { login: string }, policy: Readonly<PasswordPolicy> = PLATFORM_PASSWORD_POLICY): PasswordProblem[] {
  const problems: PasswordProblem[] = [];
  const length = lengthOf(password);
  if (length < policy.minLength) problems.push({ code: 'too-short', params: { min: policy.minLength, length }, message: `password must be at least ${policy.minLength} characters long (it has ${length})` });
  if (length > policy.maxLength) problems.push({ code: 'too-long', params: { max: policy.maxLength }, message: `password must be at most ${policy.maxLength} characters long` });
  for (const cls of policy.requiredClasses) {
    if (!CLASS_TESTS[cls].test.test(password)) problems.push({ code: 'needs-class', params: { class: cls }, message: `password must contain ${CLASS_TESTS[cls].name} (your organisation's rule)` });
  }
  const lower = password.normalize('NFC').toLowerCase();
  // Also catch the usual decorations of a common password: "Password2026!" is "password".
  const core = lower.replace(/[\d\W_]+$/u, '').replace(/^[\d\W_]+/u, '');
  if (COMMON.has(lower) || (core.length >= 4 && COMMON.has(core))) {
    problems.push({ code: 'common', params: {}, message: 'password is on the list of commonly used passwords; choose a longer phrase of unrelated words' });
  }
  const login = context.login.normalize('NFC').toLowerCase();
  const localPart = login.split('@')[0] ?? login;
  if ((localPart.length >= 3 && lower.includes(localPart)) || lower === login) {
    problems.push({ code: 'contains-login', params: {}, message: 'password must not contain your login or e-mail address' });
  }
  return problems;
}

/** The problems as messages only (each saying what to fix); empty when the password is acceptable. */
export function passwordProblems(password: string, context: { login: string }, policy: Readonly<PasswordPolicy> = PLATFORM_PASSWORD_POLICY): string[] {
  return passwordProblemList(password, context, policy).map((p) => p.message);
}

/** A refusal that carries both the messages (`problems`) and their codes (`problemCodes`) to the client. */
export function passwordRefusal(problems: PasswordProblem[]): ValidationError {
  return new ValidationError(problems.map((p) => p.message).join('; '), {
    problems: problems.map((p) => p.message),
    problemCodes: problems.map((p) => ({ code: p.code, params: p.params })),
  });
}

export function assertAcceptablePassword(password: string, context: { login: string }, policy: Readonly<PasswordPolicy> = PLATFORM_PASSWORD_POLICY): void {
  const problems = passwordProblemList(password, context, policy);
  if (problems.length > 0) throw passwordRefusal(problems);
}

/** Checks a tenant policy proposed by an admin; every problem is named. Returns the normalised policy. */
export function parseTenantPolicy(input: Partial<PasswordPolicy>): PasswordPolicy {
  const policy: PasswordPolicy = {
    minLength: input.minLength ?? PLATFORM_PASSWORD_POLICY.minLength,
    maxLength: PLATFORM_PASSWORD_POLICY.maxLength,
    requiredClasses: [...new Set(input.requiredClasses ?? [])],
    maxAgeDays: input.maxAgeDays ?? null,
    historyCount: input.historyCount ?? 0,
    secondFactorRoles: [...new Set(input.secondFactorRoles ?? [])],
  };
  const problems: string[] = [];
  const within = (name: keyof typeof POLICY_BOUNDS, value: number) => {
    const [min, max] = POLICY_BOUNDS[name];
    if (!Number.isInteger(value) || value < min || value > max) problems.push(`${name} must be a whole number from ${min} to ${max} (got ${value})`);
  };
  within('minLength', policy.minLength);
  if (policy.maxAgeDays !== null) within('maxAgeDays', policy.maxAgeDays);
  within('historyCount', policy.historyCount);
  for (const cls of policy.requiredClasses) {
    if (!CHARACTER_CLASSES.includes(cls)) problems.push(`requiredClasses: '${String(cls)}' is not one of ${CHARACTER_CLASSES.join(', ')}`);
  }
  for (const role of policy.secondFactorRoles) {
    if (!POLICY_ROLES.includes(role)) problems.push(`secondFactorRoles: '${String(role)}' is not one of ${POLICY_ROLES.join(', ')}`);
  }
  if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });
  return policy;
}

/** Whether a password set at `changedAt` has passed the policy's maximum age at `now`. */
export function passwordExpired(policy: Readonly<PasswordPolicy>, changedAt: string | null, now: Date): boolean {
  if (policy.maxAgeDays === null || changedAt === null) return false;
  return now.getTime() - new Date(changedAt).getTime() > policy.maxAgeDays * 24 * 60 * 60 * 1000;
}
