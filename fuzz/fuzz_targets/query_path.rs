//! Fuzzes the DNS query path: any bytes, over UDP and TCP rules. It must
//! never panic, and whenever hickory-proto can parse the query, it must also
//! parse our reply, which must echo the ID and set QR.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run query_path` (see the Justfile).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use k8gb::dns::snapshot::Snapshot;
use k8gb::dns::wire::{self, Outcome, QueryCtx, Scratch, Transport};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(k8gb::dns::testing::sample_snapshot)
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    let _ = wire::classify(data);
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    for transport in [Transport::Udp, Transport::Tcp] {
        let ctx = QueryCtx {
            client: IpAddr::from([192, 0, 2, 1]),
            transport,
            reserve: 0,
        };
        match wire::respond(snap, None, data, &ctx, &mut scratch, &mut out) {
            Outcome::Drop => {}
            Outcome::Reply { .. } | Outcome::Notify { .. } => {
                assert!(out.len() >= 12, "reply shorter than a header");
                assert_eq!(&out[..2], &data[..2], "id echoed");
                assert!(out[2] & 0x80 != 0, "QR set");
                if transport == Transport::Udp {
                    assert!(out.len() <= wire::MAX_UDP_PAYLOAD as usize, "UDP reply over the limit");
                }
                if hickory_proto::op::Message::from_vec(data).is_ok() {
                    if let Err(e) = hickory_proto::op::Message::from_vec(&out) {
                        panic!("reply to a parseable query does not parse: {e}");
                    }
                }
            }
        }
    }
});
