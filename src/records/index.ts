export { blindIndexBits, blindIndexPlanMigration, createCollection, DEFAULT_EXPECTED_ROWS, type Collection, type DataSession, type RecordInput, type RecordView } from './collection.js';
export { contactsMigration, contactsSpec, CSV_COLUMNS, type ContactTable } from './contacts.js';
export { jobsMigration, jobsSpec } from './jobs.js';
export { dataSessionOf, registerRecordRoutes, subjectIndexesOf } from './records.routes.js';
export { createSubjectKeys, ledgerSubjectIndex, type SubjectKeys, type SubjectKeyStore } from './subject-keys.js';
