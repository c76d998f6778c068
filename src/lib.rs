//! k8gb: a global server load balancer for Kubernetes, in one binary.
//!
//! Module map and invariants: `docs/architecture.md`.

pub mod api;
pub mod config;
pub mod core;
pub mod logging;
