export { createIdentityService, type IdentityService, type Clock } from './identity.service.js';
export { createPasswordHasher, type PasswordHasher, type Argon2Params } from './passwords.js';
export { createLoginThrottle, createMemoryAttemptStore, createRedisAttemptStore, delayAfter, ThrottledError, type AttemptStore, type LoginAttempt, type LoginThrottle } from './throttle.js';
