//! Shared by the integration tests: a real `sigil serve` child process on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const SIGIL: &str = env!("CARGO_BIN_EXE_sigil");

/// A `sigil serve` child process and the address it announced.
pub struct Served {
    pub child: Child,
    pub addr: String,
    pub log: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

pub fn serve(data_dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(SIGIL);
    cmd.arg("serve")
        .env("SIGIL_SERVER__LISTEN", "127.0.0.1:0")
        .env("SIGIL_SERVER__DATA_DIR", data_dir)
        .env("SIGIL_SERVER__WORKERS", "2")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = log.recv_timeout(Duration::from_millis(200)) else { continue };
        seen.push(line.clone());
        if let Some(rest) = line.split("sigil listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return Served { child, addr, log };
        }
    }
    let _ = child.kill();
    panic!("sigil did not announce its address; it said:\n{}", seen.join("\n"));
}

/// A free loopback port now (for a server that must know its own URL before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP client that does not follow redirects (the OAuth2/SSO tests read each one).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(20)).build().unwrap()
}

/// Status, headers and JSON body (`null` when the body is not JSON) of a request.
pub async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Runs `node tests/js/<script> <args>` — a browser script: playwright-core (`npm ci` in
/// tests/js) driving Debian's chromium, both installed by `ops/test.sh` — and answers its
/// standard output; the test fails with the script's output if it fails or takes over `limit`.
pub async fn browser_script(script: &str, args: &[&str], limit: Duration) -> String {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} (ops/test.sh does) to install playwright-core",
        js.display()
    );
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "Debian's chromium is needed (ops/test.sh installs it)");
    let out = tokio::time::timeout(limit, tokio::process::Command::new("node").current_dir(&js).arg(script).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("{script} took over {limit:?}"))
        .expect("node is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The environment of a server for browser tests: it listens on 127.0.0.1:`port` and is
/// `http://localhost:port` to the browser (WebAuthn needs a host name), with plain-http
/// cookies, the admin secret, fast password hashes and limits no test run reaches.
pub fn browser_env(port: u16, secret: &str) -> Vec<(&'static str, String)> {
    let base = format!("http://localhost:{port}");
    vec![
        ("SIGIL_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("SIGIL_ACCOUNTS__PUBLIC_URL", base.clone()),
        ("SIGIL_ACCOUNTS__COOKIE_SECURE", "false".into()),
        ("SIGIL_ACCOUNTS__INTERNAL_SECRET", secret.into()),
        ("SIGIL_WEBAUTHN__RP_ID", "localhost".into()),
        ("SIGIL_WEBAUTHN__ALLOWED_ORIGINS", format!("[\"{base}\"]")),
        ("SIGIL_PASSWORDS__HASH", "{ memory_kib = 7168, iterations = 5, parallelism = 1 }".into()),
        ("SIGIL_LIMITS__LOGIN_PER_IP", "1000/10s".into()),
        ("SIGIL_LIMITS__MFA_PER_IP", "1000/1m".into()),
        ("SIGIL_LIMITS__MFA_PER_ACCOUNT", "1000/1m".into()),
    ]
}
