//! Every scenario of sigil-load, briefly, against a real sigil on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The child is killed and reaped by `Sigil`'s Drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_sigil-load");
const SECRET: &str = "scenario-test-secret";

struct Sigil(Child, String);

impl Drop for Sigil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sigil` is built beside `sigil-load` by `cargo test --workspace`.
fn start_sigil(dir: &std::path::Path) -> Sigil {
    let bin = std::path::Path::new(LOAD).with_file_name("sigil");
    assert!(bin.exists(), "{} missing: run the workspace's tests (cargo test --workspace)", bin.display());
    let mut child = Command::new(bin)
        .arg("serve")
        .env("SIGIL_SERVER__LISTEN", "127.0.0.1:0")
        .env("SIGIL_SERVER__DATA_DIR", dir)
        .env("SIGIL_LIMITS__ENABLED", "false")
        .env("SIGIL_STORE__DURABILITY", "buffered")
        .env("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET)
        .env("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
        .env("SIGIL_PASSWORDS__HASH", "{ memory_kib = 7168, iterations = 5, parallelism = 1 }")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.split("sigil listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            // Keep reading its log so that sigil never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Sigil(child, format!("http://{addr}"));
        }
        assert!(Instant::now() < deadline, "sigil did not start");
    }
    panic!("sigil exited before listening");
}

fn load(url: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let hdr = dir.path().join("latency.hdr");
    let out = Command::new(LOAD)
        .args(args)
        .args(["--url", url, "--quiet", "--warmup", "0s", "--connections", "8"])
        .arg("--json")
        .arg(&json)
        .arg("--hdr")
        .arg(&hdr)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("p99 ms"), "a table: {stdout}");
    assert!(std::fs::metadata(&hdr).unwrap().len() > 0, "an HDR histogram file");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn every_scenario_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let sigil = start_sigil(dir.path());
    let url = sigil.1.clone();

    let r = load(&url, &["phrase", "--count", "300"]);
    assert_eq!(r["ok"], 300, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);

    let r = load(&url, &["phrase", "--duration", "1s", "--rate", "200"]);
    let ok = r["ok"].as_u64().unwrap();
    assert!((150..=210).contains(&ok), "fixed rate: {r}");

    let r = load(&url, &["wallet-login", "--count", "40"]);
    assert_eq!(r["ok"], 40, "{r}");

    let r = load(&url, &["session-check", "--sessions", "5", "--count", "200"]);
    assert_eq!(r["ok"], 200, "{r}");

    let r = load(&url, &["ws-push", "--sockets", "30"]);
    assert_eq!(r["ok"], 30, "every socket got its frame: {r}");

    let r = load(&url, &["ws-idle", "--sockets", "50", "--duration", "1s"]);
    assert_eq!(r["extra"]["sockets"], 50, "{r}");
    assert!(r["extra"]["bytes_per_socket"].is_number(), "{r}");

    let r = load(&url, &["get", "--path", "/healthz", "--count", "100"]);
    assert_eq!(r["ok"], 100, "{r}");

    let r = load(&url, &["password-login", "--sessions", "3", "--count", "24", "--internal-secret", SECRET]);
    assert_eq!(r["ok"], 24, "{r}");
    let r = load(&url, &["token-check", "--sessions", "4", "--count", "200", "--internal-secret", SECRET]);
    assert_eq!(r["ok"], 200, "{r}");
    let r = load(&url, &["ip-push", "--sockets", "5", "--internal-secret", SECRET]);
    assert_eq!(r["ok"], 5, "every waiting socket got its approval: {r}");
    let r = load(&url, &["mfa-login", "--sessions", "6", "--internal-secret", SECRET]);
    assert_eq!(r["ok"], 6, "{r}");
    let r = load(&url, &["cookie-check", "--sessions", "4", "--count", "200", "--internal-secret", SECRET]);
    assert_eq!(r["ok"], 200, "{r}");
    let out = Command::new(LOAD).args(["token-check", "--url", &url, "--quiet", "--count", "1"]).env_remove("SIGIL_LOAD_INTERNAL_SECRET").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--internal-secret"));

    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/mixed.toml");
    let r = load(&url, &["mixed", "--scenario-file", file.to_str().unwrap(), "--count", "300", "--sessions", "5"]);
    assert_eq!(r["ok"], 300, "{r}");
}
