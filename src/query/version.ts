/**
 * The ptrack version whose functions and map ptrackd answers for (ptrack_version()). A module of its own
 * so that `ptrackd --version` can name it without loading SQLite and the worker pool.
 */
export const PTRACK_VERSION = '2.4';
