//! The authoritative DNS server: precomputed snapshots ([`snapshot`]), the
//! query path over raw wire format ([`wire`]), and the UDP, TCP and
//! DNS-over-TLS listeners ([`server`], [`tls`]).

pub mod server;
pub mod snapshot;
pub mod testing;
pub mod tls;
pub mod wire;
