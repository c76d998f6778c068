//! `k8gb demo` runs the whole scenario on a fresh machine and exits cleanly.

use std::process::Command;

#[test]
fn demo_shows_failover_and_failback() {
    let out = Command::new(env!("CARGO_BIN_EXE_k8gb"))
        .args(["demo", "--base", "41"])
        .env_clear()
        .output()
        .expect("run k8gb demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "1. all backends healthy",
        "every cluster answers without eu after",
        "fail-back everywhere after",
        "stopped the three clusters",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}\n{stderr}");
    }
    // after the failover every cluster answers us,ap for the failover host
    let after = stdout
        .split("every cluster answers without eu")
        .nth(1)
        .unwrap_or("");
    let table: Vec<&str> = after.lines().skip(2).take(3).collect();
    assert!(table.iter().all(|l| l.contains("us,ap")), "{table:?}");
}
