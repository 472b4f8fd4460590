//! The Redis (Cluster) implementation of [`Store`]: cluster mode.
//!
//! Redis Cluster has no transaction across hash slots, so the store's guarantees are restated
//! per *step*: one Lua script on one slot, atomic on the server. Every operation becomes at
//! most three phases, run in this order and each confirmed by `WAIT` before the next starts:
//!
//! 1. **pointers in** — puts of *pointer* families ([`Cf::SessionsByOwner`],
//!    [`Cf::SessionIds`], [`Cf::AccountNames`]) that live on other slots than the deciding key;
//! 2. **decide** — the guard (take, compare-and-set, absent) and every write on the deciding
//!    key's slot, in one script: exactly one of any number of concurrent takers wins, on any
//!    node of the fleet;
//! 3. **records, then pointers out** — the other writes on other slots, primary records first,
//!    pointer deletes last.
//!
//! So a record never exists without the pointers that find it (logout-all and listings see
//! every live session), and a pointer may briefly (or, after a crash between phases, until it
//! expires) point at a record that is not there or belongs to someone else. Readers therefore
//! always load the record a pointer names and check it; a pointer alone never authenticates.
//! Related records share a hash tag: a key is tagged with its own bytes, so the same key in
//! several families (a phrase and the wallet session opened with it; a session and its
//! activity) lands on one slot and is written in the deciding step.
//!
//! Expiry is Redis's own (`PXAT`): Redis reclaims an expired key itself. Index entries of
//! [`Cf::SessionsByOwner`] are members of one sorted set per owner, scored by their expiry.
//!
//! The [`Store`] trait is synchronous: each call runs its commands on this store's own Tokio
//! runtime (one multiplexed connection per Redis node) and waits for the answer with a
//! deadline, so a lost Redis gives an error after `timeout`, never a hang.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, FromRedisValue, Script, Value};

use super::{Batch, Change, Cf, Current, Entry, Millis, Op, Store, StoreError, StoreFuture, now_ms};

/// The default first part of every key sigil writes, so one Redis can be shared with other
/// software (and several deployments or test runs with each other, each with its own).
pub const DEFAULT_NAMESPACE: &str = "sigil";

/// An [`Store::update`] re-reads and re-decides when another writer changed the key between
/// its read and its write (optimistic concurrency): at least this often, then until the
/// store's timeout has passed.
const MIN_UPDATE_ATTEMPTS: usize = 16;

/// How long a counted [`Store::approximate_count`] answer is reused (counting scans the keyspace).
const COUNT_TTL: Duration = Duration::from_secs(60);

/// The one write script. `ARGV[1]` is now (ms); then a program of operations, each a code
/// followed by a `KEYS` index and its arguments. Guards (`T`, `A`, `C`) come first, so a
/// refusal returns before anything is written: the script is all or nothing.
const APPLY: &str = r#"
local now = tonumber(ARGV[1])
local taken = false
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i + 1])]
  if op == 'T' then
    taken = redis.call('GET', k)
    if not taken then return {0} end
    redis.call('DEL', k)
    i = i + 2
  elseif op == 'A' then
    if redis.call('EXISTS', k) == 1 then return {0} end
    i = i + 2
  elseif op == 'C' then
    local cur = redis.call('GET', k)
    if ARGV[i + 2] == '0' then
      if cur then return {-1} end
      i = i + 3
    else
      if cur ~= ARGV[i + 3] then return {-1} end
      i = i + 4
    end
  elseif op == 'P' then
    local at = tonumber(ARGV[i + 3])
    if at == 0 then redis.call('SET', k, ARGV[i + 2])
    elseif at <= now then redis.call('DEL', k)
    else redis.call('SET', k, ARGV[i + 2], 'PXAT', at) end
    i = i + 4
  elseif op == 'D' then
    redis.call('DEL', k)
    i = i + 2
  elseif op == 'Z' or op == 'Y' then
    if op == 'Y' then
      redis.call('ZREM', k, ARGV[i + 2])
      i = i + 3
    else
      local at = tonumber(ARGV[i + 3])
      if at == 0 then redis.call('ZADD', k, '+inf', ARGV[i + 2])
      elseif at > now then redis.call('ZADD', k, at, ARGV[i + 2])
      else redis.call('ZREM', k, ARGV[i + 2]) end
      i = i + 4
    end
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
    if #top == 2 then
      if top[2] == 'inf' then redis.call('PERSIST', k) else redis.call('PEXPIREAT', k, top[2]) end
    end
  elseif op == 'R' then
    if redis.call('GET', k) == ARGV[i + 2] then redis.call('DEL', k) end
    i = i + 3
  else
    return redis.error_reply('sigil: unknown store operation')
  end
end
return {1, taken}
"#;

/// A value and its absolute expiry (-1: none) in one atomic read, for [`Store::update`].
const READ: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return {} end
return {v, redis.call('PEXPIRETIME', KEYS[1])}
"#;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Seed nodes of a cluster, or one standalone server.
    pub urls: Vec<String>,
    /// Replicas that must confirm each write; `None`: 1 if there are replicas, else 0.
    pub wait_replicas: Option<u32>,
    /// Deadline of one command (and of a `WAIT`).
    pub timeout: Duration,
    /// First part of every key ([`DEFAULT_NAMESPACE`]).
    pub namespace: String,
}

#[derive(Clone)]
enum Conn {
    Cluster(ClusterConnection),
    Single(ConnectionManager),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, StoreError> {
        match self {
            Conn::Cluster(c) => cmd.query_async(c).await,
            Conn::Single(c) => cmd.query_async(c).await,
        }
        .map_err(redis_error)
    }

    /// A keyless command on the primary that serves `slot` (the connection that wrote it).
    async fn on_slot<T: FromRedisValue>(&mut self, cmd: Cmd, slot: u16) -> Result<T, StoreError> {
        match self {
            Conn::Cluster(c) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
                let v = c.route_command(cmd, route).await.map_err(redis_error)?;
                redis::from_redis_value(v).map_err(|e| StoreError::Backend(format!("redis: {e}")))
            }
            Conn::Single(c) => cmd.query_async(c).await.map_err(redis_error),
        }
    }

    async fn on_address<T: FromRedisValue>(&mut self, cmd: Cmd, node: &NodeAddress) -> Result<T, StoreError> {
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
                let v = c.route_command(cmd, route).await.map_err(redis_error)?;
                redis::from_redis_value(v).map_err(|e| StoreError::Backend(format!("redis: {e}")))
            }
            (conn, _) => conn.query(&cmd).await,
        }
    }

    async fn invoke(&mut self, script: &Script, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Result<Value, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k.as_slice());
        }
        for a in argv {
            inv.arg(a.as_slice());
        }
        match self {
            Conn::Cluster(c) => inv.invoke_async(c).await,
            Conn::Single(c) => inv.invoke_async(c).await,
        }
        .map_err(redis_error)
    }
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// The store on Redis. Cheap to share behind an `Arc`; every call is synchronous.
pub struct RedisStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    conn: Conn,
    cluster: bool,
    wait_replicas: u32,
    timeout: Duration,
    apply: Script,
    read: Script,
    ns: String,
    counts: Mutex<BTreeMap<Cf, (Instant, u64)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("cluster", &self.cluster).field("wait_replicas", &self.wait_replicas).finish()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // The last owner may be an async task: a runtime must not be dropped (blocking) there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` on `handle` and waits at most `deadline` for it, from any thread (also from
/// inside another runtime, where `block_on` would panic).
fn block<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    deadline: Duration,
    fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(deadline).map_err(|_| StoreError::Backend("redis: no answer before the deadline".into()))?
}

impl RedisStore {
    /// Connects to a Redis Cluster (found by asking the first reachable URL whether cluster
    /// mode is on) or to one standalone Redis, and loads nothing: scripts are sent on first use.
    pub fn connect(options: &RedisOptions) -> Result<Self, StoreError> {
        let open = |reason: String| StoreError::Open { path: options.urls.join(","), reason };
        let first = options.urls.first().ok_or_else(|| open("no Redis URL configured".into()))?.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sigil-redis")
            .enable_all()
            .build()
            .map_err(|e| open(e.to_string()))?;
        let handle = runtime.handle().clone();
        let timeout = options.timeout;
        let urls = options.urls.clone();
        let connect = async move {
            let client = redis::Client::open(first.as_str()).map_err(redis_error)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let mut single = client.get_connection_manager_with_config(config).await.map_err(redis_error)?;
            let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut single).await.map_err(redis_error)?;
            if info.contains("cluster_enabled:1") {
                let client = ClusterClientBuilder::new(urls)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(redis_error)?;
                Ok(Conn::Cluster(client.get_async_connection().await.map_err(redis_error)?))
            } else if urls.len() > 1 {
                Err(StoreError::Backend("several Redis URLs given, but the first is not in cluster mode".into()))
            } else {
                Ok(Conn::Single(single))
            }
        };
        let conn = block(&handle, timeout * 5, connect).map_err(|e| open(e.to_string()))?;
        let cluster = matches!(conn, Conn::Cluster(_));
        let mut store = Self {
            runtime: Some(runtime),
            handle,
            conn,
            cluster,
            wait_replicas: 0,
            timeout,
            apply: Script::new(APPLY),
            read: Script::new(READ),
            ns: options.namespace.clone(),
            counts: Mutex::new(BTreeMap::new()),
        };
        store.wait_replicas = match options.wait_replicas {
            Some(n) => n,
            None => u32::from(store.replicas().map_err(|e| open(e.to_string()))? > 0),
        };
        Ok(store)
    }

    /// Whether this store talks to a Redis Cluster (rather than one standalone server).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// How many replicas confirm each acknowledged write.
    pub fn wait_replicas(&self) -> u32 {
        self.wait_replicas
    }

    /// The fewest replicas any primary has (0 for a standalone server without replicas).
    fn replicas(&self) -> Result<usize, StoreError> {
        if self.cluster {
            let nodes = self.cluster_nodes()?;
            Ok(nodes.iter().filter(|n| n.primary).map(|p| nodes.iter().filter(|r| r.replica_of == p.id).count()).min().unwrap_or(0))
        } else {
            let mut conn = self.conn.clone();
            let info: String =
                self.run(async move { conn.query(redis::cmd("INFO").arg("replication")).await })?;
            Ok(info
                .lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0))
        }
    }

    fn cluster_nodes(&self) -> Result<Vec<Node>, StoreError> {
        let mut conn = self.conn.clone();
        let text: String = self.run(async move { conn.query(&redis::cmd("CLUSTER").arg("NODES").to_owned()).await })?;
        Ok(text.lines().filter_map(Node::parse).collect())
    }

    /// Runs `fut` with the deadline of one operation (its commands and WAITs).
    /// (Metrics per operation come from `Observed`.)
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Result<T, StoreError> {
        block(&self.handle, self.timeout * 4, fut)
    }

    /// `WAIT`'s own timeout: half the command deadline, so that its "not enough replicas"
    /// answer arrives before the client gives up on the command.
    fn wait_ms(&self) -> u64 {
        (self.timeout.as_millis() as u64 / 2).max(1)
    }

    fn executor(&self, relaxed: bool) -> Executor {
        Executor {
            conn: self.conn.clone(),
            apply: self.apply.clone(),
            wait: self.wait_replicas,
            relaxed,
            wait_ms: self.wait_ms(),
        }
    }
}

/// A node to send a command to: (host, port) of a cluster node, `None` for the one server.
type NodeAddress = Option<(String, u16)>;

/// Every key matching `pattern` on `nodes` (each primary of a cluster, or the one server): a
/// full `SCAN` of each — for listings and counts, never for a request's hot path.
async fn scan_keys(conn: &mut Conn, nodes: &[NodeAddress], pattern: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = Vec::new();
    for node in nodes {
        let mut cursor = "0".to_string();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, batch): (String, Vec<Vec<u8>>) = conn.on_address(cmd, node).await?;
            keys.extend(batch);
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(keys)
}

/// One line of `CLUSTER NODES`.
struct Node {
    id: String,
    host: String,
    port: u16,
    primary: bool,
    replica_of: String,
    serving: bool,
}

impl Node {
    fn parse(line: &str) -> Option<Node> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, addr, flags, master) = (*f.first()?, *f.get(1)?, *f.get(2)?, *f.get(3)?);
        let addr = addr.split(['@', ',']).next()?;
        let (host, port) = addr.rsplit_once(':')?;
        let failed = flags.contains("fail") || flags.contains("noaddr") || flags.contains("handshake");
        Some(Node {
            id: id.to_string(),
            host: host.to_string(),
            port: port.parse().ok()?,
            primary: flags.contains("master") && !failed,
            replica_of: master.to_string(),
            serving: f.len() > 8,
        })
    }
}

// ---- keys ------------------------------------------------------------------------------------

/// The families whose entries point at a record elsewhere and are checked against it by
/// every reader (see the module comment): written before the record, deleted after it.
fn is_pointer(cf: Cf) -> bool {
    matches!(cf, Cf::SessionsByOwner | Cf::SessionIds | Cf::AccountNames)
}

/// `sigil:<family>:{<hex of tag>}`: the hash tag is the hex of the tag bytes, which never
/// contains `}`, and equal tags in any family share a slot.
fn redis_key(ns: &str, cf: Cf, tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ns.len() + cf.name().len() + 4 + 2 * tag.len());
    out.extend_from_slice(ns.as_bytes());
    out.push(b':');
    out.extend_from_slice(cf.name().as_bytes());
    out.extend_from_slice(b":{");
    out.extend_from_slice(hex::encode(tag).as_bytes());
    out.push(b'}');
    out
}

/// The store key back from a [`redis_key`] of `cf`.
fn store_key(ns: &str, cf: Cf, redis_key: &[u8]) -> Option<Vec<u8>> {
    let head = format!("{ns}:{}:{{", cf.name());
    let inner = redis_key.strip_prefix(head.as_bytes())?.strip_suffix(b"}")?;
    hex::decode(inner).ok()
}

/// Where an entry lives: its Redis key, and for [`Cf::SessionsByOwner`] its member in the
/// owner's sorted set.
struct Place {
    key: Vec<u8>,
    member: Option<Vec<u8>>,
    slot: u16,
}

fn place(ns: &str, cf: Cf, key: &[u8]) -> Place {
    let (tag, member) = match cf {
        Cf::SessionsByOwner => {
            let (owner, primary) = split_owner(key);
            (owner, Some(primary.unwrap_or_default().to_vec()))
        }
        _ => (key, None),
    };
    Place { key: redis_key(ns, cf, tag), member, slot: slot_of(tag) }
}

/// `owner ‖ 0 ‖ rest` → (owner, rest); no NUL → (everything, None).
fn split_owner(key: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut parts = key.splitn(2, |&b| b == 0);
    (parts.next().unwrap_or_default(), parts.next())
}

/// The cluster slot of a tag (CRC16/XMODEM of the hash tag's text, modulo 16384).
fn slot_of(tag: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hex::encode(tag).as_bytes()) % 16384
}

// ---- steps -----------------------------------------------------------------------------------

/// One run of [`APPLY`] on one slot.
#[derive(Debug, Clone, Default)]
struct Step {
    slot: u16,
    keys: Vec<Vec<u8>>,
    argv: Vec<Vec<u8>>,
}

impl Step {
    fn new(slot: u16, now: Millis) -> Self {
        Step { slot, keys: Vec::new(), argv: vec![now.to_string().into_bytes()] }
    }

    fn key(&mut self, key: &[u8]) -> Vec<u8> {
        let i = match self.keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key.to_vec());
                self.keys.len() - 1
            }
        };
        (i + 1).to_string().into_bytes()
    }

    fn push(&mut self, code: &str, key: &[u8], args: &[&[u8]]) {
        let index = self.key(key);
        self.argv.push(code.as_bytes().to_vec());
        self.argv.push(index);
        self.argv.extend(args.iter().map(|a| a.to_vec()));
    }

    fn is_empty(&self) -> bool {
        self.argv.len() <= 1
    }

    /// Appends `op` as the script's operations.
    fn op(&mut self, ns: &str, op: &Op) {
        match op {
            Op::Put { cf, key, value, expires_at } => {
                let p = place(ns, *cf, key);
                let at = expires_at.unwrap_or(0).to_string();
                match &p.member {
                    // Pointer-only entries: their value is always empty in sigil's use.
                    Some(m) => self.push("Z", &p.key, &[m, at.as_bytes()]),
                    None => self.push("P", &p.key, &[value, at.as_bytes()]),
                }
            }
            Op::Delete { cf, key } => {
                let p = place(ns, *cf, key);
                match &p.member {
                    Some(m) => self.push("Y", &p.key, &[m]),
                    None => self.push("D", &p.key, &[]),
                }
            }
        }
    }
}

fn op_place(ns: &str, op: &Op) -> (Cf, Place) {
    match op {
        Op::Put { cf, key, .. } | Op::Delete { cf, key } => (*cf, place(ns, *cf, key)),
    }
}

/// An operation in phases (see the module comment).
#[derive(Debug, Default)]
struct Plan {
    pointers_in: Vec<Step>,
    decide: Option<Step>,
    records: Vec<Step>,
    pointers_out: Vec<Step>,
}

fn group(ns: &str, steps: &mut Vec<Step>, slot: u16, now: Millis, op: &Op) {
    match steps.iter_mut().find(|s| s.slot == slot) {
        Some(s) => s.op(ns, op),
        None => {
            let mut s = Step::new(slot, now);
            s.op(ns, op);
            steps.push(s);
        }
    }
}

impl Plan {
    /// Spreads `ops` over the phases around `decide` (which already holds its guards).
    fn new(ns: &str, decide: Option<Step>, ops: &[Op], now: Millis) -> Plan {
        let mut plan = Plan { decide, ..Plan::default() };
        for op in ops {
            let (cf, p) = op_place(ns, op);
            if let Some(d) = plan.decide.as_mut().filter(|d| d.slot == p.slot) {
                d.op(ns, op);
                continue;
            }
            let phase = match (op, is_pointer(cf)) {
                (Op::Put { .. }, true) => &mut plan.pointers_in,
                (Op::Delete { .. }, true) => &mut plan.pointers_out,
                _ => &mut plan.records,
            };
            group(ns, phase, p.slot, now, op);
        }
        plan
    }
}

/// What the decide step answered.
enum Outcome {
    Done(Option<Vec<u8>>),
    Refused,
    Conflict,
}

/// Runs [`Plan`]s: owns clones of what the async side needs.
#[derive(Clone)]
struct Executor {
    conn: Conn,
    apply: Script,
    wait: u32,
    wait_ms: u64,
    /// A relaxed write skips the `WAIT` of its last phase only: the phases before it are still
    /// confirmed, so a failover can lose a relaxed write's end, never its middle (a record
    /// without its pointers, or a deleted record whose pointers survive).
    relaxed: bool,
}

impl Executor {
    async fn step(&self, step: &Step) -> Result<Outcome, StoreError> {
        let mut conn = self.conn.clone();
        let reply = conn.invoke(&self.apply, &step.keys, &step.argv).await?;
        let Value::Array(items) = reply else {
            return Err(StoreError::Backend("redis: unexpected script reply".into()));
        };
        match items.first() {
            Some(Value::Int(1)) => Ok(Outcome::Done(match items.get(1) {
                Some(Value::BulkString(v)) => Some(v.clone()),
                _ => None,
            })),
            Some(Value::Int(0)) => Ok(Outcome::Refused),
            Some(Value::Int(-1)) => Ok(Outcome::Conflict),
            _ => Err(StoreError::Backend("redis: unexpected script reply".into())),
        }
    }

    /// `WAIT` on the primaries of `slots`: the writes sent there before are on `self.wait`
    /// replicas, or the operation fails.
    async fn confirm(&self, slots: impl IntoIterator<Item = u16>) -> Result<(), StoreError> {
        if self.wait == 0 {
            return Ok(());
        }
        let mut slots: Vec<u16> = slots.into_iter().collect();
        slots.sort_unstable();
        slots.dedup();
        try_join_all(slots.into_iter().map(|slot| async move {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(self.wait).arg(self.wait_ms);
            let acked: u64 = conn.on_slot(cmd, slot).await?;
            if acked < u64::from(self.wait) {
                return Err(StoreError::Backend(format!(
                    "redis: {acked} of {} replicas confirmed the write in time",
                    self.wait
                )));
            }
            Ok(())
        }))
        .await
        .map(|_| ())
    }

    async fn phase(&self, steps: &[Step], confirm: bool) -> Result<(), StoreError> {
        if steps.is_empty() {
            return Ok(());
        }
        try_join_all(steps.iter().map(|s| self.step(s))).await?;
        if confirm {
            self.confirm(steps.iter().map(|s| s.slot)).await?;
        }
        Ok(())
    }

    /// Runs the plan; the decide step's outcome (Done(None) without one).
    async fn run(&self, plan: &Plan) -> Result<Outcome, StoreError> {
        let decide = plan.decide.as_ref().filter(|d| !d.is_empty());
        // Phase order: pointers in, decide, records, pointers out. Each is confirmed before
        // the next starts; the last one of a relaxed write is not.
        let present = [!plan.pointers_in.is_empty(), decide.is_some(), !plan.records.is_empty(), !plan.pointers_out.is_empty()];
        let last = present.iter().rposition(|p| *p);
        let confirm = |phase: usize| !self.relaxed || last.is_some_and(|l| phase < l);
        self.phase(&plan.pointers_in, confirm(0)).await?;
        let outcome = match decide {
            Some(d) => {
                let outcome = self.step(d).await?;
                if !matches!(outcome, Outcome::Done(_)) {
                    return Ok(outcome);
                }
                if confirm(1) {
                    self.confirm([d.slot]).await?;
                }
                outcome
            }
            None => Outcome::Done(None),
        };
        self.phase(&plan.records, confirm(2)).await?;
        self.phase(&plan.pointers_out, confirm(3)).await?;
        Ok(outcome)
    }
}

/// A claimed key and the value it was claimed with (released only if it still holds it).
type Claim = (Vec<u8>, Vec<u8>);

// ---- the trait -------------------------------------------------------------------------------

impl Store for RedisStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let p = place(&self.ns, cf, key);
        let mut conn = self.conn.clone();
        self.run(async move {
            match p.member {
                Some(m) => {
                    let score: Option<f64> = conn.query(redis::cmd("ZSCORE").arg(&p.key).arg(&m)).await?;
                    Ok(score.filter(|s| *s > now_ms() as f64).map(|_| Vec::new()))
                }
                None => conn.query(redis::cmd("GET").arg(&p.key)).await,
            }
        })
    }

    /// Awaited on the caller's runtime: the command goes to the connection's driver task (on
    /// this store's runtime) and the answer comes back on a channel, so no thread waits.
    fn get_async(&self, cf: Cf, key: &[u8]) -> StoreFuture<Option<Vec<u8>>> {
        let p = place(&self.ns, cf, key);
        let (mut conn, deadline) = (self.conn.clone(), self.timeout * 4);
        Box::pin(async move {
            let read = async {
                match p.member {
                    Some(m) => {
                        let score: Option<f64> = conn.query(redis::cmd("ZSCORE").arg(&p.key).arg(&m)).await?;
                        Ok(score.filter(|s| *s > now_ms() as f64).map(|_| Vec::new()))
                    }
                    None => conn.query(redis::cmd("GET").arg(&p.key)).await,
                }
            };
            tokio::time::timeout(deadline, read)
                .await
                .map_err(|_| StoreError::Backend("redis: no answer before the deadline".into()))?
        })
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let plan = Plan::new(&self.ns, None, batch.ops(), now_ms());
        let exec = self.executor(batch.is_relaxed());
        self.run(async move { exec.run(&plan).await.map(|_| ()) })
    }

    fn write_each(&self, batches: Vec<Batch>) -> Result<(), StoreError> {
        let now = now_ms();
        let runs: Vec<(Plan, bool)> = batches
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| (Plan::new(&self.ns, None, b.ops(), now), b.is_relaxed()))
            .collect();
        let (strict, relaxed) = (self.executor(false), self.executor(true));
        self.run(async move {
            try_join_all(runs.iter().map(|(plan, is_relaxed)| {
                let exec = if *is_relaxed { &relaxed } else { &strict };
                async move { exec.run(plan).await.map(|_| ()) }
            }))
            .await
            .map(|_| ())
        })
    }

    fn take_each(&self, cf: Cf, items: Vec<(Vec<u8>, Batch)>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let now = now_ms();
        let relaxed = items.iter().all(|(_, b)| b.is_relaxed());
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        // A key named twice is taken by its first item only.
        let plans: Vec<Option<Plan>> = items
            .iter()
            .map(|(key, then)| {
                seen.insert(key.clone()).then(|| {
                    let p = place(&self.ns, cf, key);
                    let mut decide = Step::new(p.slot, now);
                    decide.push("T", &p.key, &[]);
                    Plan::new(&self.ns, Some(decide), then.ops(), now)
                })
            })
            .collect();
        let exec = self.executor(relaxed);
        self.run(async move {
            try_join_all(plans.iter().map(|plan| async {
                match plan {
                    None => Ok(None),
                    Some(plan) => match exec.run(plan).await? {
                        Outcome::Done(v) => Ok(v),
                        _ => Ok(None),
                    },
                }
            }))
            .await
        })
    }

    fn update(
        &self,
        cf: Cf,
        key: &[u8],
        relaxed: bool,
        decide: &mut dyn FnMut(Option<&Current>) -> Change,
    ) -> Result<Change, StoreError> {
        let p = place(&self.ns, cf, key);
        if p.member.is_some() {
            return Err(StoreError::Backend(format!("update of {} entries is not supported", cf.name())));
        }
        let started = Instant::now();
        for attempt in 0.. {
            if attempt >= MIN_UPDATE_ATTEMPTS && started.elapsed() > self.timeout {
                break;
            }
            let (mut conn, read, rkey) = (self.conn.clone(), self.read.clone(), p.key.clone());
            let current: Option<Current> = self.run(async move {
                let reply = conn.invoke(&read, &[rkey], &[]).await?;
                let Value::Array(reply) = reply else {
                    return Err(StoreError::Backend("redis: unexpected read reply".into()));
                };
                match reply.as_slice() {
                    [] => Ok(None),
                    [Value::BulkString(v), Value::Int(at)] => {
                        Ok(Some(Current { value: v.clone(), expires_at: u64::try_from(*at).ok() }))
                    }
                    _ => Err(StoreError::Backend("redis: unexpected read reply".into())),
                }
            })?;
            let change = decide(current.as_ref());
            let now = now_ms();
            let mut guard = Step::new(p.slot, now);
            match &current {
                Some(c) => guard.push("C", &p.key, &[b"1", &c.value]),
                None => guard.push("C", &p.key, &[b"0"]),
            }
            let plan = match &change {
                Change::Keep => return Ok(change),
                Change::Put { value, expires_at, then } => {
                    let mut ops = vec![Op::Put { cf, key: key.to_vec(), value: value.clone(), expires_at: *expires_at }];
                    ops.extend_from_slice(then.ops());
                    Plan::new(&self.ns, Some(guard), &ops, now)
                }
                Change::Delete { then } => {
                    let mut ops = vec![Op::Delete { cf, key: key.to_vec() }];
                    ops.extend_from_slice(then.ops());
                    Plan::new(&self.ns, Some(guard), &ops, now)
                }
            };
            let exec = self.executor(relaxed);
            match self.run(async move { exec.run(&plan).await })? {
                Outcome::Done(_) => return Ok(change),
                Outcome::Conflict | Outcome::Refused => continue,
            }
        }
        Err(StoreError::Backend(format!("redis: {} kept changing; update gave up", cf.name())))
    }

    fn insert_new(&self, absent: &[(Cf, Vec<u8>)], batch: Batch) -> Result<bool, StoreError> {
        let now = now_ms();
        // Each absent key is claimed on its own slot, with the batch's put of it if there is
        // one (SET only if absent); a refused claim releases the claims made before it.
        let mut claims = Vec::with_capacity(absent.len());
        let mut claimed_ops = Vec::new();
        for (cf, key) in absent {
            let p = place(&self.ns, *cf, key);
            let mut step = Step::new(p.slot, now);
            match &p.member {
                Some(_) => return Err(StoreError::Backend(format!("insert_new on {} is not supported", cf.name()))),
                None => step.push("A", &p.key, &[]),
            }
            let put = batch.ops().iter().position(|op| matches!(op, Op::Put { cf: c, key: k, .. } if c == cf && k == key));
            let release = match put.and_then(|i| batch.ops().get(i)) {
                Some(op @ Op::Put { value, .. }) => {
                    step.op(&self.ns, op);
                    claimed_ops.push(put);
                    Some((p.key.clone(), value.clone()))
                }
                _ => None,
            };
            claims.push((step, release));
        }
        let rest: Vec<Op> =
            batch.ops().iter().enumerate().filter(|(i, _)| !claimed_ops.contains(&Some(*i))).map(|(_, op)| op.clone()).collect();
        let plan = Plan::new(&self.ns, None, &rest, now);
        let exec = self.executor(batch.is_relaxed());
        self.run(async move {
            let mut done: Vec<(u16, Option<Claim>)> = Vec::new();
            for (step, release) in claims {
                match exec.step(&step).await {
                    Ok(Outcome::Done(_)) => done.push((step.slot, release)),
                    refused => {
                        for (slot, release) in done {
                            if let Some((key, value)) = release {
                                let mut undo = Step::new(slot, now);
                                undo.push("R", &key, &[&value]);
                                exec.step(&undo).await?;
                            }
                        }
                        return refused.map(|_| false);
                    }
                }
            }
            exec.confirm(done.iter().map(|(slot, _)| *slot)).await?;
            exec.run(&plan).await?;
            Ok(true)
        })
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut conn = self.conn.clone();
        if cf == Cf::SessionsByOwner {
            // The owner's sorted set holds every entry under this prefix (owner ‖ 0 ‖ …).
            let (owner, Some(rest)) = split_owner(prefix) else {
                return Err(StoreError::Backend("sessions_by_owner is scanned by owner only".into()));
            };
            let (owner, rest) = (owner.to_vec(), rest.to_vec());
            let container = redis_key(&self.ns, cf, &owner);
            return self.run(async move {
                let members: Vec<Vec<u8>> = conn
                    .query(redis::cmd("ZRANGE").arg(&container).arg(format!("({}", now_ms())).arg("+inf").arg("BYSCORE"))
                    .await?;
                let mut out: Vec<Entry> = members
                    .into_iter()
                    .filter(|m| m.starts_with(&rest))
                    .map(|m| (super::index_key(&owner, &m), Vec::new()))
                    .collect();
                out.sort();
                out.truncate(limit);
                Ok(out)
            });
        }
        let (nodes, pattern) = self.scan_plan(cf, prefix)?;
        let ns = self.ns.clone();
        self.run(async move {
            let mut keys = scan_keys(&mut conn, &nodes, &pattern).await?;
            keys.sort();
            keys.dedup();
            let values = try_join_all(keys.iter().map(|k| {
                let mut conn = conn.clone();
                async move { conn.query::<Option<Vec<u8>>>(redis::cmd("GET").arg(k)).await }
            }))
            .await?;
            let mut out: Vec<Entry> = keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some((store_key(&ns, cf, k)?, v?)))
                .collect();
            out.sort();
            out.truncate(limit);
            Ok(out)
        })
    }

    fn approximate_count(&self, cf: Cf) -> Result<u64, StoreError> {
        let counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, n)) = counts.get(&cf)
            && at.elapsed() < COUNT_TTL
        {
            return Ok(*n);
        }
        drop(counts);
        let n = match cf {
            Cf::SessionsByOwner => 0,
            _ => self.scan_keys_count(cf)?,
        };
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(cf, (Instant::now(), n));
        Ok(n)
    }

    /// Every acknowledged write already waited for its replicas; relaxed ones are confirmed
    /// here by a `WAIT` on every primary.
    fn persist(&self) -> Result<(), StoreError> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let (n, ms) = (self.wait_replicas, self.wait_ms());
        self.run(async move {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(n).arg(ms);
            let acked: u64 = match &mut conn {
                Conn::Cluster(c) => {
                    let route = RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::Aggregate(redis::cluster_routing::AggregateOp::Min)),
                    ));
                    redis::from_redis_value(c.route_command(cmd, route).await.map_err(redis_error)?)
                        .map_err(|e| StoreError::Backend(format!("redis: {e}")))?
                }
                Conn::Single(_) => conn.query(&cmd).await?,
            };
            if acked < u64::from(n) {
                return Err(StoreError::Backend(format!("redis: {acked} of {n} replicas confirmed in time")));
            }
            Ok(())
        })
    }

    /// Every primary answers (a cluster with a slot whose primary is down is not ready).
    fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.run(async move {
            let cmd = redis::cmd("PING");
            match &mut conn {
                Conn::Cluster(c) => {
                    let route =
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
                    c.route_command(cmd, route).await.map_err(redis_error)?;
                    let info: String = conn.query(&redis::cmd("CLUSTER").arg("INFO").to_owned()).await?;
                    if !info.contains("cluster_state:ok") {
                        return Err(StoreError::Backend("redis: the cluster is not in state ok".into()));
                    }
                    Ok(())
                }
                Conn::Single(_) => conn.query::<String>(&cmd).await.map(|_| ()),
            }
        })
    }
}

impl RedisStore {
    /// Where a scan of `cf` by `prefix` looks (every serving primary, or the one server) and
    /// its `MATCH` pattern (the key without its closing brace, then `*`).
    fn scan_plan(&self, cf: Cf, prefix: &[u8]) -> Result<(Vec<NodeAddress>, Vec<u8>), StoreError> {
        let nodes = if self.cluster {
            self.cluster_nodes()?.into_iter().filter(|n| n.primary && n.serving).map(|n| Some((n.host, n.port))).collect()
        } else {
            vec![None]
        };
        let mut pattern = redis_key(&self.ns, cf, prefix);
        pattern.pop();
        pattern.push(b'*');
        Ok((nodes, pattern))
    }

    fn scan_keys_count(&self, cf: Cf) -> Result<u64, StoreError> {
        let (nodes, pattern) = self.scan_plan(cf, b"")?;
        let mut conn = self.conn.clone();
        self.run(async move { Ok(scan_keys(&mut conn, &nodes, &pattern).await?.len() as u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_share_slots_by_tag() {
        let k = redis_key("t", Cf::Sessions, b"\xff\x00}{");
        assert_eq!(k, b"t:sessions:{ff007d7b}");
        assert_eq!(store_key("t", Cf::Sessions, &k), Some(b"\xff\x00}{".to_vec()));
        assert_eq!(store_key("t", Cf::Phrases, &k), None);
        assert_eq!(place("t", Cf::Phrases, b"abc").slot, place("t", Cf::Sessions, b"abc").slot);
        let p = place("t", Cf::SessionsByOwner, &crate::store::index_key(b"1owner", b"sess"));
        assert_eq!(p.member.as_deref(), Some(&b"sess"[..]));
        assert_eq!(p.key, redis_key("t", Cf::SessionsByOwner, b"1owner"));
        // The reference slot of Redis's own docs: "123456789" hashes to 0x31C3.
        assert_eq!(crc16::State::<crc16::XMODEM>::calculate(b"123456789"), 0x31C3);
    }

    #[test]
    fn pointer_puts_go_first_and_pointer_deletes_last() {
        let mut b = Batch::new();
        b.put(Cf::Sessions, b"s1".to_vec(), b"v".to_vec());
        b.put(Cf::SessionsByOwner, crate::store::index_key(b"owner", b"s1"), Vec::new());
        b.delete(Cf::SessionIds, b"id".to_vec());
        b.put(Cf::Sessions, b"s2".to_vec(), b"v".to_vec());
        let plan = Plan::new("t", None, b.ops(), 1);
        assert_eq!(plan.pointers_in.len(), 1);
        assert_eq!(plan.pointers_out.len(), 1);
        assert_eq!(plan.records.iter().map(|s| s.keys.len()).sum::<usize>(), 2);
        let mut decide = Step::new(place("t", Cf::Phrases, b"s1").slot, 1);
        decide.push("T", &place("t", Cf::Phrases, b"s1").key, &[]);
        let plan = Plan::new("t", Some(decide), b.ops(), 1);
        let d = plan.decide.unwrap();
        assert_eq!(d.keys.len(), 2, "the session shares the phrase's slot: {:?}", d.keys);
    }

    #[test]
    fn cluster_nodes_lines_parse() {
        let line = "07c3 127.0.0.1:30004@40004 myself,master - 0 0 1 connected 0-5460";
        let n = Node::parse(line).unwrap();
        assert!(n.primary && n.serving);
        assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", 30004));
        let r = Node::parse("e7d1 127.0.0.1:30005@40005,host slave 07c3 0 0 2 connected").unwrap();
        assert!(!r.primary && !r.serving);
        assert_eq!(r.replica_of, "07c3");
        assert!(!Node::parse("x 127.0.0.1:1@2 master,fail - 0 0 1 connected 1-2").unwrap().primary);
    }
}
