//! The Kubernetes controller. This branch holds only the pure traffic-source
//! resolver; the kube-rs controller lands on top of it.

pub mod sources;
