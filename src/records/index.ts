export { contactsMigration, createContacts, ledgerSubjectIndex, BLIND_INDEX_BITS, type Contact, type ContactInput, type Contacts, type DataSession } from './contacts.js';
export { registerRecordRoutes } from './records.routes.js';
