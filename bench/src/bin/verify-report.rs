//! Same-run comparison of sigil's verifier with raw libsecp256k1 recovery.
//!
//! `cargo run --release -p sigil-bench --bin verify-report [-- SECONDS_PER_ROW]`
//! prints the SPEC's "signature verify, engine only" rows with each figure beside its
//! reference, and writes `bench/results/verify-<date>.json`.

use std::time::Duration;

use serde_json::json;
use sigil_bench::{Kind, RawRecover, checks, mixed_checks, rate};
use sigil_engine::verify::{Policy, verify_batch};

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let threads = rayon::current_num_threads();
    const N: usize = 4096;

    eprintln!("preparing {N} signatures per kind (off the clock)…");
    let raw = RawRecover::new(N);
    let sets: Vec<(Kind, Vec<sigil_engine::verify::Check>)> =
        [Kind::BtcCompressed, Kind::BtcUncompressed, Kind::Eth].into_iter().map(|k| (k, checks(k, N))).collect();
    let mixed = mixed_checks(N);

    let raw_1 = raw.rate_one_thread(budget);
    let raw_all = raw.rate_all_threads(budget);

    let mut rows = Vec::new();
    for (kind, set) in &sets {
        let mut i = 0usize;
        let r = rate(budget, 1, || {
            i = (i + 1) % set.len();
            let ok = set.get(i).is_some_and(|c| c.verify(Policy::SIGIL).is_ok());
            assert!(ok, "benchmark signature failed to verify");
        });
        rows.push((format!("verify {} (1 thread)", kind.label()), r, raw_1, 0.9));
    }
    let batch = rate(budget, N, || {
        let results = verify_batch(&mixed, Policy::SIGIL);
        assert!(results.iter().all(Result::is_ok), "benchmark signature failed to verify");
    });
    rows.push((format!("verify_batch mixed ({threads} threads)"), batch, raw_all, 0.9));

    println!("{:<38} {:>12} {:>22} {:>7} {:>7} {:>6}", "scenario", "verif/s", "reference (raw rec/s)", "ratio", "target", "met");
    let mut json_rows = Vec::new();
    for (name, r, reference, target) in &rows {
        let ratio = r / reference;
        let met = ratio >= *target;
        println!(
            "{name:<38} {r:>12.0} {reference:>22.0} {:>6.1}% {:>6.0}% {:>6}",
            ratio * 100.0,
            target * 100.0,
            if met { "met" } else { "MISSED" }
        );
        json_rows.push(json!({"scenario": name, "rate": r, "reference": reference, "ratio": ratio, "target": target, "met": met}));
    }
    println!("raw libsecp256k1 recover: {raw_1:.0}/s on 1 thread, {raw_all:.0}/s on {threads} threads");

    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let report = json!({
        "date": date,
        "threads": threads,
        "seconds_per_row": secs,
        "raw_recover_1_thread": raw_1,
        "raw_recover_all_threads": raw_all,
        "rows": json_rows,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let path = dir.join(format!("verify-{}.json", date.get(..10).unwrap_or("undated")));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()));
    match written {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
