/**
 * Domain errors: plain classes with a stable code, a message for humans and typed details.
 * They know nothing of HTTP; `src/http/errors.ts` and the CLI map them to status codes and exit codes.
 */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'FORBIDDEN'
  | 'UNAUTHENTICATED'
  | 'CONFLICT'
  | 'VALIDATION'
  | 'POLICY_VIOLATION'
  | 'SUSPENDED'
  | 'CONFIG_INVALID'
  | 'THROTTLED'
  | 'SECOND_FACTOR_REQUIRED'
  | 'SESSION_LOCKED'
  | 'ACTION_REQUIRED'
  /** The server is at a limit it protects itself with (e.g. password hashes waiting); retry shortly. */
  | 'BUSY';

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class NotFoundError extends DomainError {
  constructor(what: string, details: Record<string, unknown> = {}) {
    super('NOT_FOUND', `${what} not found`, details);
  }
}

/** Refused by policy. Cross-tier refusals use NotFoundError instead, so existence is not revealed. */
export class ForbiddenError extends DomainError {
  constructor(message = 'you are not allowed to do this') {
    super('FORBIDDEN', message);
  }
}

export class UnauthenticatedError extends DomainError {
  constructor(message = 'log in first: this needs a valid session') {
    super('UNAUTHENTICATED', message);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONFLICT', message, details);
  }
}

export class ValidationError extends DomainError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('VALIDATION', message, details);
  }
}

export class SuspendedError extends DomainError {
  constructor() {
    super('SUSPENDED', 'this tenant is suspended; ask your reseller or the operator to resume it');
  }
}

/** A replayed request token locked this session (S2.6): every later request is refused. */
export class SessionLockedError extends DomainError {
  constructor() {
    super('SESSION_LOCKED', 'this session was locked because an earlier request was sent again (replay); log in again');
  }
}

export type PendingAction = 'password_change' | 'second_factor_setup';

/** The session may only finish what is pending (a forced password change, a required second factor). */
export class ActionRequiredError extends DomainError {
  constructor(readonly pending: readonly PendingAction[]) {
    super(
      'ACTION_REQUIRED',
      pending.includes('password_change')
        ? 'you must set a new password before you continue (POST /api/v1/auth/password)'
        : 'your organisation requires a second factor: set one up before you continue (POST /api/v1/auth/totp/setup)',
      { pending: [...pending] },
    );
  }
}
