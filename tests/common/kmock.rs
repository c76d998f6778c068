//! The `kmock` API emulator (PyPI) for controller and delegation tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator; killed on drop.
pub struct Kmock(Child);

impl Drop for Kmock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/support/kmock_server.py` on `host:port` and waits until it
/// serves; fails with an install hint when the package is missing.
pub fn start_kmock(host: &str, port: u16) -> Kmock {
    let ok = Command::new("python3")
        .args(["-c", "import kmock"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Python package kmock is missing: run `pip install kmock` (scripts/test.sh installs it)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kmock_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([host, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kmock");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100))
            && l.contains("ready")
        {
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("kmock exited with {s}");
        }
        assert!(Instant::now() < deadline, "kmock did not start within 30 s");
    }
    Kmock(child)
}
