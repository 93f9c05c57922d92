//! Keeping the work: the autosave in IndexedDB, project files, and what a project holds of the
//! page.

pub(crate) mod autosave;
pub(crate) mod project;
pub(crate) mod project_state;
pub(crate) mod storage;
