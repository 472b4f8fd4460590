//! The benchmark harness: SPEC.md's performance table, every figure beside a reference
//! measured in the same run. Run it through `bench/run.sh`, which builds the release binaries
//! and raises the file-descriptor limit; it writes `bench/results/<date>.json`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde_json::{Value, json};
use sigil_bench::{RawRecover, rate};
use sigil_engine::account::password::Hasher;
use sigil_engine::config::HashParams;

/// The internal secret of the server under test (for creating load-test accounts).
const BENCH_SECRET: &str = "sigil-bench-internal-secret";

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    path.exists().then_some(path.clone()).ok_or_else(|| format!("{} not built (run bench/run.sh)", path.display()))
}

/// Starts `cmd` and waits for a line containing `marker` followed by an address.
fn start(mut cmd: Command, marker: &str, from_stderr: bool) -> Result<(Running, String), String> {
    if from_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let reader: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.stderr.take().ok_or("no stderr")?)
    } else {
        Box::new(child.stdout.take().ok_or("no stdout")?)
    };
    let mut lines = BufReader::new(reader).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.split(marker).nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
            // Keep draining the pipe so the child never blocks on a full one.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((Running(child), addr));
        }
    }
    let _ = child.kill();
    Err(format!("{cmd:?} did not print {marker:?}"))
}

/// This process's soft limit on open files (children inherit it), from /proc/self/limits.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok()))
        .unwrap_or(10_000)
}

fn load(url: &str, args: &[&str], scratch: &Path) -> Result<Value, String> {
    load_on(&[], url, args, scratch)
}

/// `program` run through `prefix` (`taskset -c 1`: pinned to a core), or as is.
fn command_on(prefix: &[&str], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// [`load`] with the load generator run through `prefix` (`taskset -c 0`: pinned to a core).
fn load_on(prefix: &[&str], url: &str, args: &[&str], scratch: &Path) -> Result<Value, String> {
    let json = scratch.join(format!("load-{}.json", args.join("_").replace(['/', ' '], "-")));
    eprintln!("  {}sigil-load {}", prefix.iter().map(|p| format!("{p} ")).collect::<String>(), args.join(" "));
    let before = cpu_ticks();
    let out = command_on(prefix, bin("sigil-load")?)
        .args(args)
        .args(["--url", url, "--quiet", "--json"])
        .arg(&json)
        .output()
        .map_err(|e| e.to_string())?;
    let steal = steal_percent(before, cpu_ticks());
    if !out.status.success() {
        return Err(format!("sigil-load {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| e.to_string())?;
    let mut run: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if let (Some(fields), Some(steal)) = (run.as_object_mut(), steal) {
        fields.insert("steal_percent".into(), json!(steal));
    }
    Ok(run)
}

/// The machine's CPU time so far (all CPUs, USER_HZ ticks): (steal, total), from /proc/stat.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user and nice.
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// The share of CPU time the hypervisor took from this VM between two readings ("steal"): the
/// vCPUs were ready to run and did not. Latency figures of a run with much steal say more about
/// the host than about the server.
fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    (t1 > t0).then(|| 100.0 * s1.saturating_sub(s0) as f64 / (t1 - t0) as f64)
}

/// A fresh `sigil serve` on `data`, run through `prefix`, with limits off; its address.
fn start_sigil_on(prefix: &[&str], data: &Path) -> Result<(Running, String), String> {
    let mut cmd = command_on(prefix, bin("sigil")?);
    cmd.arg("serve")
        .env("SIGIL_SERVER__LISTEN", "127.0.0.1:0")
        .env("SIGIL_SERVER__DATA_DIR", data)
        .env("SIGIL_LIMITS__ENABLED", "false")
        .env("SIGIL_ACCOUNTS__INTERNAL_SECRET", BENCH_SECRET)
        .env("NO_COLOR", "1");
    start(cmd, "sigil listening on http://", true)
}

/// This program re-run through `prefix` in one of its helper modes (`args`): the `N` figures it
/// prints.
fn figures_on<const N: usize>(prefix: &[&str], args: &[&str]) -> Result<[f64; N], String> {
    let out = command_on(prefix, std::env::current_exe().map_err(|e| e.to_string())?)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let figures: Vec<f64> = String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|f| f.parse().ok()).collect();
    figures.try_into().map_err(|_| format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
}

/// Raw recoveries per second on one thread, measured by this program re-run through `prefix`
/// (so on the core the server under test is confined to).
fn raw_recover_on(prefix: &[&str]) -> Result<f64, String> {
    figures_on::<1>(prefix, &[RAW_RECOVER_MODE, "2"]).map(|[rate]| rate)
}

/// `harness --raw-recover-1 SECS` prints raw recoveries per second on one thread and exits.
const RAW_RECOVER_MODE: &str = "--raw-recover-1";

/// `harness --echo` answers every byte of one TCP connection with the same byte (printing
/// `echo on ADDR` first); `harness --idle-rtt ADDR N GAP_MS` sends it N single bytes, each
/// after GAP_MS of sleep, and prints the round trips' p50 and p99 in ms.
const ECHO_MODE: &str = "--echo";
const IDLE_RTT_MODE: &str = "--idle-rtt";

fn echo() -> Result<(), String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("echo on {}", listener.local_addr().map_err(|e| e.to_string())?);
    let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    while conn.read(&mut byte).map_err(|e| e.to_string())? == 1 {
        conn.write_all(&byte).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn idle_rtt(addr: &str, n: usize, gap: Duration) -> Result<(f64, f64), String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut rtts = Vec::with_capacity(n);
    let mut byte = [7u8; 1];
    for _ in 0..n.max(1) {
        std::thread::sleep(gap);
        let t = Instant::now();
        conn.write_all(&byte).map_err(|e| e.to_string())?;
        conn.read_exact(&mut byte).map_err(|e| e.to_string())?;
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rtts.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    let at = |q: f64| rtts.get(((rtts.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    Ok((at(0.5), at(0.99)))
}

/// The machine's floor for a latency target: a one-byte round trip between a process on the
/// load generator's core and one on the server's, each asleep before it (the state a lightly
/// loaded server is in). Any server's p99 includes this wake-up. Returns (p50, p99) in ms.
fn idle_round_trip(server_pin: &[&str], load_pin: &[&str]) -> Result<(f64, f64), String> {
    let mut echo = command_on(server_pin, std::env::current_exe().map_err(|e| e.to_string())?);
    echo.arg(ECHO_MODE);
    let (_echo, addr) = start(echo, "echo on ", false)?;
    figures_on::<2>(load_pin, &[IDLE_RTT_MODE, &addr, "1500", "2"]).map(|[p50, p99]| (p50, p99))
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every architecture.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds process `pid` has used so far, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / USER_HZ
}

/// The sum of the samples of `metric` whose labels contain `labels`, from `/metrics` at `addr`.
fn counter(addr: &str, metric: &str, labels: &str) -> f64 {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return f64::NAN };
    let mut text = String::new();
    if write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() || s.read_to_string(&mut text).is_err() {
        return f64::NAN;
    }
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Server CPU per operation in the steady middle of a load run: `run` drives the load in a
/// thread; once the server's counter `metric{labels}` passes `warm` (the scenario's setup is
/// done), the server's CPU time and the counter are sampled `window` apart. Answers the load's
/// report and the microseconds of server CPU per operation — a figure that, unlike a ratio of
/// throughputs, does not depend on how much CPU the load generator took on the same cores.
#[allow(clippy::too_many_arguments)]
fn cpu_per_op(
    pid: u32,
    addr: &str,
    metric: &str,
    labels: &str,
    warm: f64,
    window: Duration,
    run: impl FnOnce() -> Result<Value, String> + Send,
) -> Result<(Value, f64), String> {
    std::thread::scope(|scope| {
        let load = scope.spawn(run);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if counter(addr, metric, labels) >= warm || load.is_finished() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (cpu0, n0) = (cpu_seconds(pid), counter(addr, metric, labels));
        std::thread::sleep(window);
        let (cpu1, n1) = (cpu_seconds(pid), counter(addr, metric, labels));
        let report = load.join().map_err(|_| "load thread panicked".to_string())??;
        let per = if n1 > n0 { (cpu1 - cpu0) / (n1 - n0) * 1e6 } else { f64::NAN };
        Ok((report, per))
    })
}

/// From exec of `sigil serve` on `dir` to the first `/readyz` that answers 200.
fn time_to_ready(dir: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut cmd = Command::new(bin("sigil")?);
    cmd.arg("serve").env("SIGIL_SERVER__LISTEN", "127.0.0.1:0").env("SIGIL_SERVER__DATA_DIR", dir).env("NO_COLOR", "1");
    let (_sigil, addr) = start(cmd, "sigil listening on http://", true)?;
    let deadline = started + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = std::net::TcpStream::connect(&addr).ok().and_then(|mut s| {
            use std::io::{Read as _, Write as _};
            write!(s, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).ok()?;
            Some(head.ends_with(b"200"))
        });
        if ready == Some(true) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err("sigil did not become ready within 30 s".into())
}

/// Threads spinning at SCHED_IDLE (the lowest CPU priority) until dropped: what any
/// background CPU work does to latency on this machine, whatever its priority.
struct Burners {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Burners {
    fn start(n: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, thread_native_id};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
                    let _ = thread_priority::set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        Self { stop, threads }
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.drain(..).for_each(|t| {
            let _ = t.join();
        });
    }
}

/// Rounds of each HTTP scenario (see `run`).
const ROUNDS: usize = 3;

/// The run with the median throughput.
fn median_run(mut runs: Vec<Value>) -> Value {
    runs.sort_by(|a, b| num(a, "/throughput_per_s").total_cmp(&num(b, "/throughput_per_s")));
    let middle = runs.len() / 2;
    runs.into_iter().nth(middle).unwrap_or(Value::Null)
}

/// Seeds 1M sessions into `dir` (with `extra` seed flags), then times a start on it.
fn seed_and_restart(dir: &Path, extra: &[&str]) -> Result<Duration, String> {
    let seeded = Command::new(bin("sigil")?)
        .args(["sessions", "seed", "--count", "1000000"])
        .args(extra)
        .env("SIGIL_SERVER__DATA_DIR", dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !seeded.status.success() {
        return Err(format!("seeding failed: {}", String::from_utf8_lossy(&seeded.stderr)));
    }
    time_to_ready(dir)
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

struct Row {
    scenario: &'static str,
    measured: String,
    reference: String,
    ratio: Option<f64>,
    target: &'static str,
    met: Option<bool>,
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let helper = match args.get(1).map(String::as_str) {
        Some(RAW_RECOVER_MODE) => {
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
            println!("{:.1}", RawRecover::new(4096).rate_one_thread(Duration::from_secs_f64(secs)));
            Some(Ok(()))
        }
        Some(ECHO_MODE) => Some(echo()),
        Some(IDLE_RTT_MODE) => Some(match (args.get(2), args.get(3).and_then(|n| n.parse().ok()), args.get(4).and_then(|g| g.parse().ok())) {
            (Some(addr), Some(n), Some(gap)) => idle_rtt(addr, n, Duration::from_millis(gap)).map(|(p50, p99)| println!("{p50:.3} {p99:.3}")),
            _ => Err(format!("usage: harness {IDLE_RTT_MODE} ADDR N GAP_MS")),
        }),
        _ => None,
    };
    if let Some(done) = helper {
        return match done {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harness: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harness: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    let ticks_at_start = cpu_ticks();
    let scratch = std::env::temp_dir().join(format!("sigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();

    eprintln!("raw libsecp256k1 recovery (reference)…");
    let raw = RawRecover::new(4096);
    let raw_all = raw.rate_all_threads(Duration::from_secs(2));
    let mixed = sigil_bench::mixed_checks(4096);
    let batch = rate(Duration::from_secs(2), mixed.len(), || {
        std::hint::black_box(sigil_engine::verify::verify_batch(&mixed, sigil_engine::verify::Policy::SIGIL));
    });
    rows.push(Row {
        scenario: "signature verify, engine only (all threads)",
        measured: format!("{batch:.0}/s"),
        reference: format!("raw recover {raw_all:.0}/s ({threads} threads)"),
        ratio: Some(batch / raw_all),
        target: ">= 90%",
        met: Some(batch / raw_all >= 0.9),
    });

    // The machine's speed drifts by ±20 % between runs of a few seconds, so the HTTP figures
    // are measured in interleaved rounds (reference, then each scenario) and each is the
    // median round: a ratio then compares runs taken seconds apart, never minutes.
    eprintln!("empty actix-web handler (reference) and sigil, {ROUNDS} interleaved rounds…");
    let (_empty_server, empty_addr) = start(Command::new(bin("empty-server")?), "listening on ", false)?;
    let empty_url = format!("http://{empty_addr}");
    let mut cmd = Command::new(bin("sigil")?);
    cmd.arg("serve")
        .env("SIGIL_SERVER__LISTEN", "127.0.0.1:0")
        .env("SIGIL_SERVER__DATA_DIR", scratch.join("data"))
        .env("SIGIL_LIMITS__ENABLED", "false")
        .env("SIGIL_LOG__FILTER", "info")
        .env("SIGIL_ACCOUNTS__INTERNAL_SECRET", BENCH_SECRET)
        // ip-push logs in "from" new addresses through X-Forwarded-For.
        .env("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
        .env("NO_COLOR", "1");
    let (_sigil, addr) = start(cmd, "sigil listening on http://", true)?;
    let url = format!("http://{addr}");
    let (mut empties, mut phrases, mut checks, mut token_checks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cookie_checks = Vec::new();
    for _ in 0..ROUNDS {
        empties.push(load(&empty_url, &["get", "-c", "64", "-d", "4s"], &scratch)?);
        phrases.push(load(&url, &["phrase", "-c", "64", "-d", "4s"], &scratch)?);
        checks.push(load(&url, &["session-check", "-c", "64", "-d", "4s", "--sessions", "200"], &scratch)?);
        token_checks.push(load(&url, &["token-check", "-c", "64", "-d", "4s", "--sessions", "200", "--internal-secret", BENCH_SECRET], &scratch)?);
        cookie_checks.push(load(&url, &["cookie-check", "-c", "64", "-d", "4s", "--sessions", "200", "--internal-secret", BENCH_SECRET], &scratch)?);
    }
    let (empty, phrase, check) = (median_run(empties), median_run(phrases), median_run(checks));
    let token_check = median_run(token_checks);
    let cookie_check = median_run(cookie_checks);
    let empty_rps = num(&empty, "/throughput_per_s");

    let r = num(&phrase, "/throughput_per_s");
    rows.push(Row {
        scenario: "GET /id/loginphrase (64 conns)",
        measured: format!("{r:.0}/s, p50 {:.2} ms, p99 {:.2} ms", num(&phrase, "/latency_ms/p50"), num(&phrase, "/latency_ms/p99")),
        reference: format!("empty handler {empty_rps:.0}/s"),
        ratio: Some(r / empty_rps),
        target: ">= 60%",
        met: Some(r / empty_rps >= 0.6),
    });

    // Wallet logins on a server confined to one core, the load generator on the other, beside
    // raw recovery on one thread of the server's core, measured seconds before (#15: the
    // client's CPU must not count against the server). Server CPU per login comes from /proc.
    let pinned = threads >= 2 && Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success());
    let (server_pin, load_pin): (&[&str], &[&str]) = if pinned { (&["taskset", "-c", "1"], &["taskset", "-c", "0"]) } else { (&[], &[]) };
    // Without pinning the server uses every core: its reference is then recovery on every
    // thread.
    let raw_near = if pinned {
        raw_recover_on(server_pin)?
    } else {
        raw.rate_all_threads(Duration::from_secs(2))
    };
    let server_threads = if pinned { 1.0 } else { threads as f64 };
    let (login_sigil, login_addr) = start_sigil_on(server_pin, &scratch.join("logins"))?;
    let (login, login_cpu) = cpu_per_op(login_sigil.0.id(), &login_addr, "sigil_flux_sessions_opened_total", "", 3_000.0, Duration::from_secs(2), || {
        load_on(load_pin, &format!("http://{login_addr}"), &["wallet-login", "-c", "64", "--count", "60000"], &scratch)
    })?;
    drop(login_sigil);
    let r = num(&login, "/throughput_per_s");
    let recover_cpu = server_threads / raw_near * 1e6;
    rows.push(Row {
        scenario: if pinned { "POST /id/verifylogin (BTC+ETH, durable; server on 1 core)" } else { "POST /id/verifylogin (BTC+ETH, durable)" },
        measured: format!(
            "{r:.0}/s, p99 {:.2} ms; server CPU {login_cpu:.0} us/login ({:.0}% of it recovering)",
            num(&login, "/latency_ms/p99"),
            recover_cpu / login_cpu * 100.0
        ),
        reference: format!("raw recover {raw_near:.0}/s on {server_threads} thread(s) ({recover_cpu:.1} us each)"),
        ratio: Some(r / raw_near),
        target: ">= 50%",
        met: Some(r / raw_near >= 0.5),
    });
    // #15's "no stalls": the same closed-loop run of 64 connections, its tail against its median.
    let (p50, p99) = (num(&login, "/latency_ms/p50"), num(&login, "/latency_ms/p99"));
    rows.push(Row {
        scenario: "wallet login tail (the run above, 64 conns)",
        measured: format!(
            "p99 {p99:.2} ms = {:.1}x p50; p99.9 {:.2} ms, max {:.2} ms",
            p99 / p50,
            num(&login, "/latency_ms/p99_9"),
            num(&login, "/latency_ms/max")
        ),
        reference: format!("p50 {p50:.2} ms"),
        ratio: None,
        target: "p99 <= 10x p50",
        met: Some(p99 <= 10.0 * p50),
    });

    // The three authenticated reads, each beside the empty handler and at 80 % of its own
    // maximum (open model).
    let secret = ["--internal-secret", BENCH_SECRET];
    let authenticated = [
        ("authenticated request (zelidauth)", "session-check", &check, &[][..]),
        ("authenticated request (Bearer, /api/auth/token)", "token-check", &token_check, &secret[..]),
        ("authenticated request (cookie, /v1/users/@me)", "cookie-check", &cookie_check, &secret[..]),
    ];
    // Same-run floors for "p99 < 2 ms at 80 %": the empty handler under the same open-model
    // load at 80 % of its own maximum, and an idle-to-idle round trip between the two cores.
    let empty_rate = format!("{:.0}", (empty_rps * 0.8).floor());
    let empty_80 = load(&empty_url, &["get", "-c", "64", "-d", "5s", "--rate", &empty_rate], &scratch)?;
    let (empty_p99_80, empty_steal_80) = (num(&empty_80, "/latency_ms/p99"), num(&empty_80, "/steal_percent"));
    eprintln!("idle round trip between the cores (reference)…");
    let (rtt_p50, rtt_p99) = idle_round_trip(server_pin, load_pin).unwrap_or_else(|e| {
        eprintln!("  idle round trip not measured: {e}");
        (f64::NAN, f64::NAN)
    });
    let mut at_80 = Vec::new();
    for (label, scenario, closed, extra) in authenticated {
        let r = num(closed, "/throughput_per_s");
        let rate = format!("{:.0}", (r * 0.8).floor());
        let args = [&[scenario, "-c", "64", "-d", "5s", "--sessions", "200", "--rate", &rate][..], extra].concat();
        let steady = load(&url, &args, &scratch)?;
        let p99 = num(&steady, "/latency_ms/p99");
        rows.push(Row {
            scenario: label,
            measured: format!("{r:.0}/s; p99 {p99:.2} ms at 80% ({rate}/s, steal {:.1}%)", num(&steady, "/steal_percent")),
            reference: format!(
                "empty handler {empty_rps:.0}/s, its p99 at 80% {empty_p99_80:.2} ms (steal {empty_steal_80:.1}%); idle round trip core to core p50 {rtt_p50:.2} / p99 {rtt_p99:.2} ms"
            ),
            ratio: Some(r / empty_rps),
            target: ">= 60%, p99 < 2 ms at 80%",
            met: Some(r / empty_rps >= 0.6 && p99 < 2.0),
        });
        at_80.push(steady);
    }
    let [steady, token_steady, cookie_steady]: [Value; 3] = at_80.try_into().map_err(|_| "three rows".to_string())?;

    // Password logins against argon2id itself at the same parameters on the same cores.
    eprintln!("raw argon2id at the default parameters (reference)…");
    let hasher = Hasher::new(HashParams::default()).map_err(|e| e.to_string())?;
    let phc = hasher.hash("reference password").map_err(|e| e.to_string())?;
    let raw_argon = rate(Duration::from_secs(3), threads * 4, || {
        (0..threads * 4).into_par_iter().for_each(|_| {
            std::hint::black_box(hasher.verify("reference password", &phc));
        });
    });
    let password = load(&url, &[&["password-login", "-c", "16", "-d", "6s", "--sessions", "16"][..], &secret[..]].concat(), &scratch)?;
    let r = num(&password, "/throughput_per_s");
    rows.push(Row {
        scenario: "password login (/api/auth/login, argon2id)",
        measured: format!("{r:.0}/s, p99 {:.1} ms", num(&password, "/latency_ms/p99")),
        reference: format!("raw argon2id {raw_argon:.0}/s ({threads} threads)"),
        ratio: Some(r / raw_argon),
        target: ">= 90%",
        met: Some(r / raw_argon >= 0.9),
    });

    // Session checks at a fixed, moderate rate: alone, then while a password storm runs.
    let calm_rate = format!("{:.0}", (num(&check, "/throughput_per_s") * 0.3).floor());
    let calm_args = ["session-check", "-c", "32", "-d", "6s", "--sessions", "200", "--rate", &calm_rate];
    let calm = load(&url, &calm_args, &scratch)?;
    let storm_url = url.clone();
    let storm_scratch = scratch.clone();
    let storm = std::thread::spawn(move || {
        load(&storm_url, &["password-login", "-c", "32", "-d", "9s", "--sessions", "16", "--internal-secret", BENCH_SECRET], &storm_scratch)
    });
    std::thread::sleep(Duration::from_secs(2));
    let stormy = load(&url, &calm_args, &scratch)?;
    let storm = storm.join().map_err(|_| "password storm thread panicked".to_string())??;
    // The machine's own share of the rise: the same load beside CPU burners that run at the
    // lowest priority there is (SCHED_IDLE), which no scheduling by sigil could beat.
    let burners = Burners::start(threads);
    let burned = load(&url, &calm_args, &scratch)?;
    drop(burners);
    let (p99_calm, p99_storm) = (num(&calm, "/latency_ms/p99"), num(&stormy, "/latency_ms/p99"));
    let p99_burned = num(&burned, "/latency_ms/p99");
    rows.push(Row {
        scenario: "session-check p99 during a password storm",
        measured: format!("p99 {p99_storm:.2} ms at {calm_rate}/s ({:.0} logins/s)", num(&storm, "/throughput_per_s")),
        reference: format!("p99 {p99_calm:.2} ms alone; {p99_burned:.2} ms beside {threads} idle-priority CPU burners"),
        ratio: Some(p99_storm / p99_calm),
        target: "rise <= 20%",
        met: Some(p99_storm <= p99_calm * 1.2),
    });

    // 16 concurrent logins (about a third of the login maximum): the push latency of a busy
    // server, not the queueing of one saturated by logins, whose every stage waits for CPU.
    let push = load(&url, &["ws-push", "-c", "16", "--sockets", "10000"], &scratch)?;
    let p99 = num(&push, "/latency_ms/p99");
    rows.push(Row {
        scenario: "websocket login push (10k waiting, 16 logging in)",
        measured: format!("p50 {:.2} ms, p99 {p99:.2} ms", num(&push, "/latency_ms/p50")),
        reference: "after the verifylogin response".into(),
        ratio: None,
        target: "p99 < 5 ms",
        met: Some(p99 < 5.0),
    });

    let ip_push = load(&url, &["ip-push", "-c", "16", "--sockets", "200", "--internal-secret", BENCH_SECRET], &scratch)?;
    let p99 = num(&ip_push, "/latency_ms/p99");
    rows.push(Row {
        scenario: "new-location approval push (/v1, 200 waiting)",
        measured: format!("p50 {:.2} ms, p99 {p99:.2} ms", num(&ip_push, "/latency_ms/p50")),
        reference: "after the approval response".into(),
        ratio: None,
        target: "p99 < 5 ms",
        met: Some(p99 < 5.0),
    });

    drop(_sigil);

    // OAuth2 refresh grants on a server confined to one core, the load generator on another:
    // the rate is then the rate per vCPU, measured rather than divided.
    let (oauth_sigil, oauth_addr) = start_sigil_on(server_pin, &scratch.join("oauth"))?;
    let oauth_url = format!("http://{oauth_addr}");
    let refresh_args = ["oauth-refresh", "-c", "64", "-d", "10s", "--sessions", "512", "--internal-secret", BENCH_SECRET];
    let grant = r#"grant_type="refresh_token""#;
    let (refresh, refresh_cpu) = cpu_per_op(oauth_sigil.0.id(), &oauth_addr, "sigil_oauth2_grants_total", grant, 3_000.0, Duration::from_secs(5), || {
        load_on(load_pin, &oauth_url, &refresh_args, &scratch)
    })?;
    drop(oauth_sigil);
    let r = num(&refresh, "/throughput_per_s");
    let per_vcpu = 1e6 / refresh_cpu;
    rows.push(Row {
        scenario: if pinned { "OAuth2 refresh grant (server on 1 core)" } else { "OAuth2 refresh grant" },
        measured: format!("{r:.0}/s, p99 {:.1} ms; {refresh_cpu:.0} us CPU each = {per_vcpu:.0}/s per vCPU", num(&refresh, "/latency_ms/p99")),
        reference: "Keycloak ~120/s per vCPU (published)".into(),
        ratio: None,
        target: ">= 6000/s per vCPU (50x)",
        met: Some(per_vcpu >= 6000.0),
    });

    // A fresh server: after the load above its allocator may hand memory back while the
    // sockets open, which would make the per-socket figure meaningless.
    let mut cmd = Command::new(bin("sigil")?);
    cmd.arg("serve")
        .env("SIGIL_SERVER__LISTEN", "127.0.0.1:0")
        .env("SIGIL_SERVER__DATA_DIR", scratch.join("idle"))
        .env("SIGIL_LIMITS__ENABLED", "false")
        .env("NO_COLOR", "1");
    let (_idle_sigil, idle_addr) = start(cmd, "sigil listening on http://", true)?;
    // 100k for real where the file-descriptor limit allows (server and client each hold one
    // per socket; the load generator spreads them over 8 loopback source addresses), else as
    // many as it allows, projected.
    let wanted = 100_000_usize.min(open_files_limit().saturating_sub(2_000)).max(1_000);
    let idle = load(&format!("http://{idle_addr}"), &["ws-idle", "-c", "256", "--sockets", &wanted.to_string(), "-d", "2s"], &scratch)?;
    let per = num(&idle, "/extra/bytes_per_socket");
    let sockets = num(&idle, "/extra/sockets");
    let gib = 1024.0 * 1024.0 * 1024.0;
    let rss = num(&idle, "/extra/server_rss_after_hold_bytes").max(num(&idle, "/extra/server_rss_open_bytes")) / gib;
    let before = num(&idle, "/extra/server_rss_before_bytes");
    let projected = (before + per * 100_000.0) / gib;
    let real = sockets >= 100_000.0;
    rows.push(Row {
        scenario: if real { "idle websockets, 100k open" } else { "idle websockets (fd limit: fewer open, projected to 100k)" },
        measured: if real {
            format!("server RSS {rss:.2} GiB ({per:.0} B/socket)")
        } else {
            format!("{sockets:.0} open: RSS {rss:.2} GiB, {per:.0} B/socket -> {projected:.2} GiB per 100k")
        },
        reference: format!("server RSS before {:.0} MiB", before / (1024.0 * 1024.0)),
        ratio: None,
        target: "100k < 1.5 GiB",
        met: Some(if real { rss < 1.5 } else { projected < 1.5 }),
    });
    drop(_idle_sigil);
    drop(_empty_server);

    eprintln!("restart with 1M sessions…");
    let restart = seed_and_restart(&scratch.join("restart"), &[])?;
    rows.push(Row {
        scenario: "restart with 1M sessions",
        measured: format!("ready (/readyz 200) {:.0} ms after exec", restart.as_secs_f64() * 1000.0),
        reference: "-".into(),
        ratio: None,
        target: "< 2 s",
        met: Some(restart < Duration::from_secs(2)),
    });

    eprintln!("restart with 1M sessions after a crash (write-ahead log replay)…");
    let crash_restart = seed_and_restart(&scratch.join("crash"), &["--unflushed"])?;
    rows.push(Row {
        scenario: "restart with 1M sessions, after a crash",
        measured: format!("ready {:.0} ms after exec (WAL replay)", crash_restart.as_secs_f64() * 1000.0),
        reference: "-".into(),
        ratio: None,
        target: "< 2 s",
        met: Some(crash_restart < Duration::from_secs(2)),
    });

    println!("{:<44} {:<52} {:<38} {:>7} {:<26} met", "scenario", "measured", "reference (same run)", "ratio", "target");
    for row in &rows {
        let ratio = row.ratio.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let met = match row.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("{:<44} {:<52} {:<38} {:>7} {:<26} {met}", row.scenario, row.measured, row.reference, ratio, row.target);
    }
    let steal = steal_percent(ticks_at_start, cpu_ticks());
    if let Some(steal) = steal {
        println!("steal time during the run (the hypervisor's, all CPUs): {steal:.1}%");
    }
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let report = json!({
        "date": date,
        "threads": threads,
        "seconds": started.elapsed().as_secs_f64(),
        "steal_percent": steal,
        "references": {"raw_recover_all_threads": raw_all, "raw_recover_one_thread_server_core": raw_near, "empty_handler_rps": empty_rps,
                       "empty_handler_80": empty_80, "idle_round_trip_ms": {"p50": rtt_p50, "p99": rtt_p99},
                       "raw_argon2id_all_threads": raw_argon},
        "rows": rows.iter().map(|r| json!({
            "scenario": r.scenario, "measured": r.measured, "reference": r.reference,
            "ratio": r.ratio, "target": r.target, "met": r.met,
        })).collect::<Vec<_>>(),
        "raw": {"empty": empty, "phrase": phrase, "wallet_login": login, "session_check": check,
                "session_check_80": steady, "ws_push": push, "ws_idle": idle,
                "token_check": token_check, "token_check_80": token_steady, "password_login": password,
                "cookie_check": cookie_check, "cookie_check_80": cookie_steady, "ip_push": ip_push,
                "session_check_calm": calm, "session_check_storm": stormy, "password_storm": storm,
                "session_check_beside_idle_burners": burned,
                "wallet_login_server_cpu_us": login_cpu, "oauth_refresh": refresh,
                "oauth_refresh_server_cpu_us": refresh_cpu, "pinned": pinned,
                "restart_1m_ms": restart.as_secs_f64() * 1000.0,
                "crash_restart_1m_ms": crash_restart.as_secs_f64() * 1000.0},
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let path = dir.join(format!("{}.json", date.get(..10).unwrap_or("undated")));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("wrote {} in {:.0} s", path.display(), started.elapsed().as_secs_f64());
    Ok(())
}
