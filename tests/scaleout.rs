//! Runs tests/scaleout/run.sh (HAProxy in front of 3 instances of this build's
//! binary; see the script) and fails with its output if any scenario fails. The
//! script prints `SKIP: <reason>` and succeeds when HAProxy cannot be installed.

use std::process::Command;

#[test]
fn haproxy_in_front_of_three_instances() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("timeout")
        .args(["--kill-after=10", "240", "bash"])
        .arg(format!("{root}/tests/scaleout/run.sh"))
        .env("WSGATE_BIN", env!("CARGO_BIN_EXE_wsgate"))
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "tests/scaleout/run.sh failed:\n{text}"
    );
}
