//! Hostile input against the running binary: every kind of malformed or
//! abusive message gets FORMERR/NOTIMP/REFUSED or is dropped, and the server
//! keeps answering correctly afterwards, over UDP and TCP.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{dig_short, start};

const CONFIG: &str = r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
dnsZones: [{parentZone: example.com, loadBalancedZone: cloud.example.com}]
gslbs:
  - {name: app, hosts: [app.cloud.example.com], strategy: {type: roundRobin}, targets: [{address: 10.0.0.1}]}
"#;

const QNAME: &[u8] = b"\x03app\x05cloud\x07example\x03com\x00";

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

fn query(id: u16) -> Vec<u8> {
    let mut v = header(id, 0x0100, [1, 0, 0, 0]);
    v.extend_from_slice(QNAME);
    v.extend_from_slice(&[0, 1, 0, 1]);
    v
}

/// (what, message, expected rcode or None for "dropped")
fn cases() -> Vec<(&'static str, Vec<u8>, Option<u8>)> {
    let with = |counts: [u16; 4], flags: u16, tail: &[u8]| {
        let mut v = header(0x4242, flags, counts);
        v.extend_from_slice(tail);
        v
    };
    let q = |extra: &[u8]| {
        let mut t = QNAME.to_vec();
        t.extend_from_slice(&[0, 1, 0, 1]);
        t.extend_from_slice(extra);
        t
    };
    vec![
        ("empty", vec![], None),
        ("truncated header", vec![0x42, 0x42, 0, 0, 0], None),
        ("a response", with([1, 0, 0, 0], 0x8000, &q(&[])), None),
        ("no question", with([0, 0, 0, 0], 0, &[]), Some(1)),
        (
            "several questions",
            with([3, 0, 0, 0], 0, &q(&q(&q(&[])))),
            Some(1),
        ),
        ("question count lies", with([1, 0, 0, 0], 0, &[]), Some(1)),
        ("truncated question", with([1, 0, 0, 0], 0, &QNAME[..5]), Some(1)),
        (
            "compression loop in question",
            with([1, 0, 0, 0], 0, &[0xC0, 0x0C, 0, 1, 0, 1]),
            Some(1),
        ),
        ("additional count lies", with([1, 0, 0, 9], 0, &q(&[])), Some(1)),
        ("answer count lies", with([1, 9, 0, 0], 0, &q(&[])), Some(1)),
        (
            "compression loop in additional",
            with([1, 0, 0, 1], 0, &q(&[0xC0, 0x1D, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])),
            Some(0),
        ),
        (
            "opt rdlength past the end",
            with([1, 0, 0, 1], 0, &q(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF])),
            Some(1),
        ),
        ("unknown opcode", with([1, 0, 0, 0], 3 << 11, &q(&[])), Some(4)),
        ("status opcode", with([1, 0, 0, 0], 2 << 11, &q(&[])), Some(4)),
        (
            "unknown class",
            with([1, 0, 0, 0], 0, &[QNAME, &[0, 1, 0, 42]].concat()),
            Some(5),
        ),
        (
            "chaos class",
            with([1, 0, 0, 0], 0, &[QNAME, &[0, 16, 0, 3]].concat()),
            Some(5),
        ),
        (
            "zone transfer over udp",
            with([1, 0, 0, 0], 0, &[QNAME, &[0, 252, 0, 1]].concat()),
            Some(5),
        ),
        ("junk", (0..200u8).map(|i| i.wrapping_mul(37)).collect(), None),
        ("oversized datagram", vec![0xFF; 4000], None),
    ]
}

fn udp_exchange(server: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    sock.send_to(msg, server).unwrap();
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

fn healthy(server: SocketAddr) {
    assert_eq!(
        dig_short(server, &["app.cloud.example.com", "A"]),
        ["10.0.0.1"],
        "UDP still answers"
    );
    assert_eq!(
        dig_short(server, &["+tcp", "app.cloud.example.com", "A"]),
        ["10.0.0.1"],
        "TCP still answers"
    );
}

#[test]
fn hostile_udp() {
    let s = start(CONFIG);
    for (what, msg, want) in cases() {
        let reply = udp_exchange(s.dns, &msg);
        match want {
            None => {
                // dropped: "junk" may parse as a header; then it must be a well-formed error reply
                if let Some(r) = reply {
                    assert!(r.len() >= 12 && r[2] & 0x80 != 0, "{what}: {r:?}");
                    assert!(
                        what == "junk" || what == "oversized datagram",
                        "{what}: expected a drop, got {r:?}"
                    );
                }
            }
            Some(rcode) => {
                let r = reply.unwrap_or_else(|| panic!("{what}: no reply"));
                assert_eq!(r[3] & 0x0F, rcode, "{what}: rcode");
                assert_eq!(&r[..2], &msg[..2], "{what}: id echoed");
            }
        }
    }
    healthy(s.dns);
    assert!(s.child.id() > 0);
}

fn tcp(server: SocketAddr) -> TcpStream {
    let t = TcpStream::connect(server).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    t
}

fn read_framed(t: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    t.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    t.read_exact(&mut body).ok()?;
    Some(body)
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn hostile_tcp() {
    let s = start(CONFIG);
    // each malformed message over TCP: the answerable ones get their rcode
    for (what, msg, want) in cases() {
        if msg.len() > u16::MAX as usize {
            continue;
        }
        let mut t = tcp(s.dns);
        t.write_all(&framed(&msg)).unwrap();
        let reply = read_framed(&mut t);
        match want {
            Some(rcode) => {
                let r = reply.unwrap_or_else(|| panic!("{what}: no reply over TCP"));
                assert_eq!(r[3] & 0x0F, rcode, "{what}");
            }
            None => {
                if let Some(r) = reply {
                    assert!(r[2] & 0x80 != 0, "{what}: {r:?}");
                }
            }
        }
    }
    // abusive connections held open while we check the server
    let mut held = Vec::new();
    // a length prefix promising 65535 bytes that never come
    let mut t = tcp(s.dns);
    t.write_all(&[0xFF, 0xFF, 1, 2, 3]).unwrap();
    held.push(t);
    // a slow client: half a length prefix
    let mut t = tcp(s.dns);
    t.write_all(&[0x00]).unwrap();
    held.push(t);
    // many idle connections
    for _ in 0..200 {
        held.push(tcp(s.dns));
    }
    // pipelined queries in one write are answered in order
    let mut t = tcp(s.dns);
    let mut burst = Vec::new();
    for id in [7u16, 8, 9] {
        burst.extend(framed(&query(id)));
    }
    t.write_all(&burst).unwrap();
    for id in [7u16, 8, 9] {
        let r = read_framed(&mut t).expect("pipelined answer");
        assert_eq!(u16::from_be_bytes([r[0], r[1]]), id);
        assert_eq!(r[3] & 0x0F, 0);
    }
    // a message cut short, then the connection closed
    let mut t = tcp(s.dns);
    t.write_all(&[0, 40, 1, 2, 3]).unwrap();
    drop(t);
    healthy(s.dns);
    // the stalled prefix is closed by the read timeout; the server never stalls
    let mut stalled = held.remove(0);
    let mut buf = [0u8; 1];
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let closed = matches!(stalled.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a connection that never sends its message is closed");
    healthy(s.dns);
}
