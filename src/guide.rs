//! The guides of the repository's `docs/` folder, readable here with the API.
//!
//! Each page below is the Markdown file of the same name, included as it is: what wsclose
//! measures and how to read it, what to do when an alert fires, how it works inside, what it
//! costs, and how it is tested.

#[doc = include_str!("../docs/metrics.md")]
pub mod metrics {}

#[doc = include_str!("../docs/runbook.md")]
pub mod runbook {}

#[doc = include_str!("../docs/operations.md")]
pub mod operations {}

#[doc = include_str!("../docs/opentelemetry.md")]
pub mod opentelemetry {}

#[doc = include_str!("../docs/design.md")]
pub mod design {}

#[doc = include_str!("../docs/performance.md")]
pub mod performance {}

#[doc = include_str!("../docs/security.md")]
pub mod security {}

#[doc = include_str!("../docs/testing.md")]
pub mod testing {}
