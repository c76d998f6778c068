//! k8gb: a global server load balancer for Kubernetes, in one binary.
//!
//! Module map and invariants: `docs/architecture.md`.

pub mod admin;
pub mod api;
pub mod config;
pub mod controller;
pub mod core;
pub mod delegation;
pub mod demo;
pub mod dns;
pub mod engine;
pub mod filewatch;
pub mod geoip;
pub mod logging;
pub mod metrics;
pub mod peer;
pub mod probe;
pub mod run;
#[cfg(test)]
mod test_logs;
