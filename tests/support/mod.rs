//! Test-support code shared by the integration tests (`mod support;`).
//!
//! - [`raw`]: a frame-level WebSocket peer that sends exactly what a test says and reports every
//!   frame it receives.
//! - [`proxy`]: a loopback TCP fault-injection proxy (delay, stall, cut, reset, close).
//! - [`timing`]: the wall-clock bounds of tests that time a close, and why they are what they are.
//!
//! Not every test binary uses every helper, hence the `dead_code` allowance; the items are `pub`
//! for readability although a test binary exports nothing, hence `unreachable_pub`.
#![allow(dead_code, unreachable_pub)]

pub mod flavor;
pub mod logs;
pub mod otlp_receiver;
pub mod pairs;
pub mod panics;
pub mod proxy;
pub mod raw;
pub mod recorder;
pub mod scenarios;
pub mod timing;
