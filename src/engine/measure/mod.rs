//! How fast a run goes and where its time goes: `bench` (images a second of each pass) and
//! `profile` (time per layer and operation).

pub mod bench;
pub mod launches;
pub mod profile;
