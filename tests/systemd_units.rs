//! The shipped systemd units pass `systemd-analyze verify` (with the built binary
//! in place of /usr/local/bin/wsgate; systemd 252 here only warns that it does not
//! know `Type=notify-reload`) and `systemd-analyze security --offline=true` rates
//! each service at an exposure of 2.0 or less. Skips, saying why, without
//! systemd-analyze.

use std::path::Path;
use std::process::Command;

fn analyze(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            println!("skipped: systemd-analyze is not available ({e})");
            None
        }
    }
}

/// Copies `units` (paths under systemd/) into a fresh folder, with the binary
/// path replaced by the one cargo built; returns the folder.
fn staged(units: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wsgate-units-{}-{}",
        std::process::id(),
        units.join("+").replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for u in units {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(u);
        let text = std::fs::read_to_string(&src).unwrap();
        let name = Path::new(u).file_name().unwrap();
        std::fs::write(
            dir.join(name),
            text.replace("/usr/local/bin/wsgate", env!("CARGO_BIN_EXE_wsgate")),
        )
        .unwrap();
    }
    dir
}

/// The lines `verify` printed, minus the one warning systemd 252 gives for
/// `Type=notify-reload` (a systemd 253 feature).
fn verify(units: &[&str], unit: &str) -> Option<Vec<String>> {
    let dir = staged(units);
    let path = dir.join(unit);
    let out = analyze(&["verify", "--man=no", path.to_str().unwrap()])?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    Some(
        text.lines()
            .filter(|l| !l.is_empty())
            .filter(|l| !l.contains("Failed to parse service type, ignoring: notify-reload"))
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn units_pass_systemd_analyze_verify() {
    for (units, unit) in [
        (&["wsgate.service"][..], "wsgate.service"),
        (&["systemd-252/wsgate.service"][..], "wsgate.service"),
        (&["wsgate.socket", "wsgate.service"][..], "wsgate.socket"),
        (
            &["wsgate.socket", "systemd-252/wsgate.service"][..],
            "wsgate.socket",
        ),
    ] {
        let Some(problems) = verify(units, unit) else {
            return;
        };
        assert!(problems.is_empty(), "{units:?}: {problems:#?}");
    }
}

#[test]
fn services_are_rated_at_an_exposure_of_2_or_less() {
    for unit in ["wsgate.service", "systemd-252/wsgate.service"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit);
        let Some(out) = analyze(&["security", "--offline=true", path.to_str().unwrap()]) else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                let rest = l.split("Overall exposure level for").nth(1)?;
                rest.split(':')
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{unit}: no exposure level in:\n{text}"));
        assert!(score <= 2.0, "{unit}: exposure {score}\n{text}");
    }
}
