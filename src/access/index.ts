export { authorize, isAllowed, type Actor, type PlatformAction, type Resource } from './policy.js';
