//! `sigil serve` for real: the binary on a free port, real HTTP, real signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// Children are reaped by `wait_exit` or killed by `Served`'s Drop.
#![allow(clippy::zombie_processes, clippy::type_complexity)]

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{SIGIL, serve};

fn get(addr: &str, path: &str) -> (u16, String, String) {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM failed");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sigil did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn health_ready_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut sigil = serve(dir.path(), &[]);

    let (status, _, body) = get(&sigil.addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _, body) = get(&sigil.addr, "/readyz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, _, body) = get(&sigil.addr, "/no/such/route");
    assert_eq!(status, 404);
    assert!(body.contains("<pre>Cannot GET /no/such/route</pre>"), "Express 404 page: {body}");

    let (status, head, body) = get(&sigil.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains(r#"sigil_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{body}");
    assert!(body.contains(r#"sigil_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{body}");
    assert!(body.contains(r#"sigil_http_request_duration_seconds_bucket{method="GET",route="/readyz""#), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    for family in ["sigil_flux_active_sessions", "sigil_verifier_queue_depth", "sigil_websockets", "sigil_notifier_subscriptions"] {
        assert!(body.contains(&format!("# TYPE {family} gauge")), "{family} missing:\n{body}");
    }

    sigterm(&sigil.child);
    let status = wait_exit(&mut sigil.child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let log: Vec<String> = sigil.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("sigil stopped cleanly")), "{log:#?}");
}

#[test]
fn sigterm_stops_cleanly_and_releases_the_store() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut sigil = serve(dir.path(), &[]);
    let (status, _, _) = get(&sigil.addr, "/readyz");
    assert_eq!(status, 200);
    // Held open through the stop: an idle keep-alive connection and a Flux websocket waiting for
    // a login. Neither may hold the stop for its timeout (10 s).
    let mut idle = TcpStream::connect(&sigil.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = [0u8; 256];
    assert!(idle.read(&mut answer).unwrap() > 0);
    let mut ws = TcpStream::connect(&sigil.addr).unwrap();
    let (_, _, phrase) = get(&sigil.addr, "/id/loginphrase");
    let phrase = phrase.split("\"data\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string();
    write!(ws, "GET /ws/id/{phrase} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let n = ws.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&answer[..n]));
    let stopping = Instant::now();
    sigterm(&sigil.child);
    let status = wait_exit(&mut sigil.child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(5), "open connections held the stop for {:?}", stopping.elapsed());
    drop((idle, ws));
    // The RocksDB lock is released: another process can open the data dir at once.
    let mut again = serve(dir.path(), &[]);
    let (status, _, _) = get(&again.addr, "/readyz");
    assert_eq!(status, 200);
    Command::new("kill").args(["-INT", &again.child.id().to_string()]).status().unwrap();
    assert!(wait_exit(&mut again.child, Duration::from_secs(20)).success(), "SIGINT stops cleanly too");
}

#[test]
fn the_reclaim_period_reaches_every_family_with_expiring_records() {
    // RocksDB records the options it runs with in the data directory's OPTIONS file.
    let dir = tempfile::tempdir().unwrap();
    let _sigil = serve(dir.path(), &[("SIGIL_STORE__RECLAIM_PERIOD", "2h")]);
    let options = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("OPTIONS-")))
        .max()
        .expect("an OPTIONS file");
    let text = std::fs::read_to_string(options).unwrap();
    let families: Vec<&str> =
        text.split("[CFOptions \"").skip(1).filter(|section| !section.starts_with("default\"")).collect();
    assert_eq!(families.len(), 15, "{text}");
    // Families with expiring records are rewritten each period; the others are left alone.
    let never_expire = ["accounts", "account_names", "groups", "app_owners", "meta"];
    for section in families {
        let name = section.split('"').next().unwrap_or_default();
        let periodic = section.contains("periodic_compaction_seconds=7200\n");
        assert_eq!(periodic, !never_expire.contains(&name), "{name}");
        assert!(section.contains("compaction_filter_factory=sigil-expired-records\n"), "{name}");
    }
}

fn run_failing(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(SIGIL);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

#[test]
fn bad_configuration_ends_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[server]\nlisten = \"127.0.0.1:0\"\nlistn = 3\n").unwrap();

    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, &str)> = vec![
        (vec!["serve"], vec![("SIGIL_FLUX__PHRASE_TTL", "soon")], "bad duration \"soon\""),
        (vec!["serve"], vec![("SIGIL_SERVR__LISTEN", "127.0.0.1:0")], "unknown field `servr`"),
        (vec!["serve", "--config", bad_toml.to_str().unwrap()], vec![], "unknown field `listn`"),
        (vec!["serve", "--config", "/nonexistent/sigil.toml"], vec![], "cannot read config file /nonexistent/sigil.toml"),
    ];
    for (args, mut env, want) in cases {
        env.push(("SIGIL_SERVER__DATA_DIR", data));
        let (code, stderr) = run_failing(&args, &env);
        assert_ne!(code, 0, "{args:?} {env:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("sigil: ") && stderr.contains(want), "{stderr}");
    }
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_failing(
        &["serve"],
        &[("SIGIL_SERVER__LISTEN", &addr), ("SIGIL_SERVER__DATA_DIR", dir.path().to_str().unwrap())],
    );
    assert_ne!(code, 0);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("sigil: cannot listen on {addr}: ")), "{stderr}");
}

#[test]
fn config_show_prints_every_section() {
    let out = Command::new(SIGIL).args(["config", "show"]).env("SIGIL_FLUX__OWNER_ZELID", "1abc").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for section in ["[server]", "[store]", "[flux]", "[accounts]", "[webauthn]", "[sms]", "[limits]", "[log]"] {
        assert!(text.contains(section), "{section} missing in\n{text}");
    }
    assert!(text.contains("owner_zelid = \"1abc\""), "{text}");
}

/// `promtool check metrics` (installed by ops/test.sh) accepts what /metrics exposes after
/// real traffic, so Prometheus will too.
#[test]
fn promtool_accepts_the_metrics() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let sigil = serve(dir.path(), &[]);
    for path in ["/healthz", "/readyz", "/id/loginphrase", "/nope"] {
        get(&sigil.addr, path);
    }
    let (_, _, body) = get(&sigil.addr, "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (ops/test.sh installs Debian's prometheus package)");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{report}");
}
