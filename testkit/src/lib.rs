//! Real Redis processes for tests: [`RedisServer`] (one standalone server) and
//! [`RedisCluster`] (3 primaries + 3 replicas, AOF on), each on free loopback ports in a temp
//! dir, killed (by pid) when dropped. Needs `redis-server` and `redis-cli` on the PATH (Debian's
//! `redis-server` package; `ops/test.sh` installs it).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Next port to try. Every port (and its cluster bus port, +10000) stays below Linux's
/// ephemeral range (32768+): a port in that range can be taken at any moment by some process's
/// outgoing connection, which made servers fail to bind. Tests in one process count up from a
/// start spread by the process id (several test binaries may run at once); a port is used only
/// if it and its bus port are free right now.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

const FIRST_PORT: u16 = 10000;
const PORTS: u16 = 11000;

fn free_port() -> u16 {
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        let start = (std::process::id() % 400) as u16 * 25;
        let _ = NEXT_PORT.compare_exchange(0, start + 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST_PORT + n % PORTS;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// `redis-cli -p port args…`, its stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli (Debian package redis-tools, installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    pid: u32,
    watchdog: Child,
    dir: std::path::PathBuf,
    extra: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A standalone server with AOF (`appendfsync always`).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Self::spawn(dir.path(), &[]);
        s._dir = Some(dir);
        s
    }

    fn spawn(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_on(free_port(), dir, extra)
    }

    fn spawn_on(port: u16, dir: &Path, extra: &[&str]) -> Self {
        // A watchdog shell starts the server and kills it (-9) as soon as this test process is
        // gone, so a server held by a static or a crashed test never outlives its test run.
        let watchdog = format!(
            "redis-server \"$@\" >/dev/null 2>&1 & r=$!; echo $r; \
             while kill -0 {me} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.3; done; kill -9 $r 2>/dev/null",
            me = std::process::id()
        );
        let mut child = Command::new("sh")
            .args(["-c", &watchdog, "redis-server"])
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let mut first = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first).expect("the server's pid");
        let pid: u32 = first.trim().parse().expect("redis-server (Debian package redis-server; ops/test.sh installs it)");
        let server = Self {
            port,
            pid,
            watchdog: child,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(port, &["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts the server again after [`RedisServer::kill`]: same port, same directory (its AOF
    /// and cluster config), so it rejoins as what it was.
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let again = Self::spawn_on(self.port, &self.dir.clone(), &extra);
        let mut old = std::mem::replace(self, again);
        self._dir = old._dir.take();
    }

    /// `kill -9` of the server (its watchdog then exits).
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).stderr(Stdio::null()).status();
        let _ = self.watchdog.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of 3 primaries and 3 replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                let d = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&d).unwrap();
                RedisServer::spawn(
                    &d,
                    &["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--cluster-config-file", "nodes.conf"],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = cli(nodes[0].port, &args);
        assert!(out.contains("All 16384 slots covered"), "cluster create failed: {out}");
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Until every live node reports `cluster_state:ok` and every primary has its replica
    /// linked and in sync.
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| cli(n.port, &["PING"]).trim() == "PONG").all(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                let role = cli(n.port, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && (role.contains("role:slave") && role.contains("master_link_status:up")
                        || role.contains("role:master") && role.contains("connected_slaves:1"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until every live node reports `cluster_state:ok` (after a failover: the replica of a
    /// killed primary has taken over its slots).
    pub fn wait_state_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| cli(n.port, &["PING"]).trim() == "PONG").collect();
            if !live.is_empty() && live.iter().all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
                return;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster did not reach state ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until the live nodes count 3 primaries again (a killed primary's replica took over) and
    /// all report `cluster_state:ok`.
    pub fn wait_failover(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.primaries().len() < 3 {
            assert!(Instant::now() < deadline, "no replica took over");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_state_ok(deadline.saturating_duration_since(Instant::now()));
    }

    /// Moves `slots` hash slots (with their keys) from the primary on `from` to the primary on
    /// `to`, live (`redis-cli --cluster reshard`); returns its output.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) -> String {
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_string();
        let (from_id, to_id) = (id(from), id(to));
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes", "--cluster-pipeline", "100"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Ports of the current primaries.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| cli(n.port, &["ROLE"]).lines().next().map(str::trim) == Some("master"))
            .filter(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            .map(|n| n.port)
            .collect()
    }
}
