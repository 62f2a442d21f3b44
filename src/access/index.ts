export { authorize, isAllowed, describeActor, type Actor, type PlatformAction, type Resource } from './policy.js';
