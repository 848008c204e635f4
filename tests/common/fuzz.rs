//! Property-based fuzzing on stable Rust (proptest), shared by the fuzz_* tests.
//!
//! `cargo test` runs a short pass (`PROPTEST_CASES`, default given by each target,
//! a few seconds in all). A long run: `FUZZ_SECS=600 cargo test --release --test
//! fuzz_relay -- --nocapture` keeps drawing fresh cases until the time is up and
//! prints how many it ran. A failing case is shrunk and its seed saved in
//! `tests/fuzz-regressions/<target>.txt` (kept in the repository): every later run
//! replays those first.
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};
use std::time::{Duration, Instant};

/// Runs `test` on cases drawn from `strategy`: `default_cases` of them, or as many
/// as fit in `FUZZ_SECS` seconds. Panics with the shrunk case on a failure.
pub fn fuzz<S, F>(target: &str, default_cases: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let secs: Option<u64> = std::env::var("FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    let path = format!(
        "{}/tests/fuzz-regressions/{target}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let config = |cases| Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            path.clone().into_boxed_str(),
        )))),
        ..Config::default()
    };
    let started = Instant::now();
    let deadline = secs.map(|s| started + Duration::from_secs(s));
    let mut total = 0u64;
    loop {
        let batch = if deadline.is_some() { 2_000 } else { cases };
        let mut runner = TestRunner::new(config(batch));
        match runner.run(&strategy, &test) {
            Ok(()) => total += u64::from(batch),
            Err(TestError::Fail(why, case)) => {
                panic!("{target}: property failed: {why}\nminimal case: {case:#?}")
            }
            Err(TestError::Abort(why)) => panic!("{target}: aborted: {why}"),
        }
        match deadline {
            Some(d) if Instant::now() < d => continue,
            _ => break,
        }
    }
    eprintln!(
        "{target}: {total} cases passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
