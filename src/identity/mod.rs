//! Who is behind an event: the CI job (pipeline, task, repository, actor,
//! workload identity) and, from the inventory, the non-human identity and
//! its owner.

pub mod ci;
pub mod inventory;
