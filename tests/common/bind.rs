//! A real BIND 9 (`named`, Debian `bind9`) as the edge DNS of a test:
//! primary for `example.com`, dynamic updates allowed with the test TSIG key.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{dig_short, eventually, require};

/// The TSIG secret of the key `k8gb-edge` the edge accepts updates with.
pub const SECRET: &str = "ZWRnZS1rZXktc2VjcmV0LWZvci1rOGdiLXRlc3RzLTMyYg==";

/// A running `named`; killed on drop.
pub struct Bind {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `named` for example.com on `ip:port` with `records` (zone-file
/// lines relative to example.com) in the zone, and waits until it answers.
/// (named listens only on addresses of configured interfaces: use 127.0.0.1.)
pub fn start(dir: &Path, ip: &str, port: u16, records: &str) -> Bind {
    require("named", "bind9");
    require("dig", "bind9-dnsutils");
    let d = dir.display();
    std::fs::write(
        dir.join("example.com.db"),
        format!(
            "$TTL 30\n@ IN SOA ns1.example.com. hostmaster.example.com. 1 7200 1800 86400 30\n\
             @ IN NS ns1.example.com.\nns1 IN A {ip}\n{records}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("named.conf"),
        format!(
            r#"options {{
    directory "{d}";
    listen-on port {port} {{ {ip}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    dnssec-validation no;
}};
controls {{ }};
key "k8gb-edge" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "example.com" {{
    type primary;
    file "{d}/example.com.db";
    update-policy {{ grant k8gb-edge zonesub ANY; }};
}};
"#
        ),
    )
    .unwrap();
    // named drops to the bind user: it must be able to write its journal here
    let _ = Command::new("chown").args(["-R", "bind:bind"]).arg(dir).status();
    let _ = Command::new("chmod").args(["755"]).arg(dir).status();
    let child = Command::new("named")
        .args(["-g", "-u", "bind", "-c"])
        .arg(dir.join("named.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start named");
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let b = Bind { child, addr };
    assert!(
        eventually(Duration::from_secs(15), || !dig_short(
            addr,
            &["example.com", "SOA"]
        )
        .is_empty()),
        "named did not start on {addr}"
    );
    b
}
