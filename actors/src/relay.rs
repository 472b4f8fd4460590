//! Cluster mode's push across nodes: every event the local notifier publishes is also sent to
//! Redis, and every event another node sent is delivered to this node's websockets.
//!
//! Events travel on a fixed set of [`SHARDS`] sharded pub/sub channels (`SPUBLISH`/
//! `SSUBSCRIBE`, spread over the cluster's primaries by their hash tags); every node listens to
//! all of them from its start, so a websocket never waits for a subscription round trip and an
//! event committed after a websocket subscribed locally cannot be missed while the relay is
//! connected. A topic's events always use the same channel, so they arrive in order. A node
//! ignores its own events (it delivered them locally already, on the fast path). The client
//! library resubscribes by itself after a reconnect or a failover; events sent while a node was
//! cut off from Redis are not replayed (its websockets time out as they would without a login).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use sigil_engine::store::{Millis, now_ms};

use crate::notifier::{Event, Notifier, Payload, Topic};

/// How many channels the events are spread over.
pub const SHARDS: u32 = 16;

#[derive(Clone)]
pub struct RelayMetrics {
    pub lag: Histogram,
    pub messages: IntCounterVec,
}

impl RelayMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "sigil_cluster_push_lag_seconds",
                    "From an event published on one node to its arrival on another (wall clocks)",
                )
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]),
            )?,
            messages: IntCounterVec::new(
                Opts::new("sigil_cluster_push_messages_total", "Cross-node push messages by direction and outcome"),
                &["direction", "outcome"],
            )?,
        };
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.messages.clone()))?;
        Ok(m)
    }
}

/// An event on the wire between nodes.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The sending node (to skip its own events).
    from: u64,
    /// When it was sent (ms since the epoch), for the lag.
    at: Millis,
    topic: Topic,
    payload: Payload,
}

#[derive(Clone)]
enum Conn {
    Cluster(redis::cluster_async::ClusterConnection),
    Single(redis::aio::MultiplexedConnection),
}

/// The relay's handle: cheap to clone, used by the notifier to send.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    node: u64,
    conn: Conn,
    handle: tokio::runtime::Handle,
    metrics: Option<RelayMetrics>,
    // Kept alive for the relay's lifetime; shut down in the background on drop.
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            rt.shutdown_background();
        }
    }
}

fn channel(topic: &Topic) -> String {
    use std::hash::{Hash, Hasher};
    // A stable hash (not the std RandomState): every node must pick the same channel.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    topic.hash(&mut h);
    format!("sigil:push:{{{}}}", h.finish() % u64::from(SHARDS))
}

/// FNV-1a: stable across processes and builds, unlike `DefaultHasher`'s keys.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn with_protocol_3(url: &str) -> String {
    if url.contains('?') { format!("{url}&protocol=3") } else { format!("{url}/?protocol=3") }
}

impl Relay {
    /// Connects to the Redis (Cluster) of `urls`, subscribes to every channel and delivers what
    /// other nodes send to `notifier`. `cluster`: the store found cluster mode on.
    pub fn start(
        urls: &[String],
        cluster: bool,
        timeout: Duration,
        notifier: Notifier,
        metrics: Option<RelayMetrics>,
    ) -> Result<Relay, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sigil-relay")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let node: u64 = rand::random();
        let on_push = {
            let metrics = metrics.clone();
            move |info: PushInfo| {
                receive(node, &notifier, metrics.as_ref(), info);
                Ok::<(), redis::aio::SendError>(())
            }
        };
        let urls: Vec<String> = urls.iter().map(|u| with_protocol_3(u)).collect();
        let channels: Vec<String> = (0..SHARDS).map(|i| format!("sigil:push:{{{i}}}")).collect();
        let connect = async move {
            if cluster {
                let client = ClusterClientBuilder::new(urls)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(on_push)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?;
                let mut conn = client.get_async_connection().await?;
                // One by one: a sharded subscription names channels of one slot only.
                for c in &channels {
                    conn.ssubscribe(c).await?;
                }
                Ok::<_, redis::RedisError>(Conn::Cluster(conn))
            } else {
                let url = urls.first().cloned().unwrap_or_default();
                let client = redis::Client::open(url.as_str())?;
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(on_push)
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                conn.subscribe(&channels).await?;
                Ok(Conn::Single(conn))
            }
        };
        // Not `block_on`: this may run inside another runtime (the server's start).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(connect.await);
        });
        let conn = match rx.recv_timeout(timeout * 5) {
            Ok(Ok(conn)) => conn,
            failed => {
                // Dropping a runtime blocks, which panics inside the server's runtime.
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer from Redis".to_string(),
                });
            }
        };
        let handle = runtime.handle().clone();
        Ok(Relay {
            inner: Arc::new(Inner { node, conn, handle, metrics, runtime: std::sync::Mutex::new(Some(runtime)) }),
        })
    }

    /// Sends `event` to the other nodes (in the background: the local delivery never waits).
    pub fn send(&self, topic: &Topic, event: &Event) {
        let wire = Wire { from: self.inner.node, at: now_ms(), topic: topic.clone(), payload: event.payload.clone() };
        let Ok(body) = serde_json::to_vec(&wire) else { return };
        let inner = self.inner.clone();
        let name = channel(topic);
        self.inner.handle.spawn(async move {
            let sent = match inner.conn.clone() {
                Conn::Cluster(mut c) => redis::cmd("SPUBLISH").arg(&name).arg(&body).query_async::<i64>(&mut c).await,
                Conn::Single(mut c) => redis::cmd("PUBLISH").arg(&name).arg(&body).query_async::<i64>(&mut c).await,
            };
            if let Some(m) = &inner.metrics {
                m.messages.with_label_values(&["out", if sent.is_ok() { "ok" } else { "error" }]).inc();
            }
            if let Err(e) = sent {
                tracing::warn!(error = %e, "cross-node push not sent");
            }
        });
    }
}

fn receive(node: u64, notifier: &Notifier, metrics: Option<&RelayMetrics>, info: PushInfo) {
    if !matches!(info.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let Some(Value::BulkString(body)) = info.data.get(1) else { return };
    let outcome = match serde_json::from_slice::<Wire>(body) {
        Ok(w) if w.from == node => "own",
        Ok(w) => {
            let lag = now_ms().saturating_sub(w.at);
            if let Some(m) = metrics {
                m.lag.observe(lag as f64 / 1000.0);
            }
            // The push latency is measured from the commit on the other node.
            let committed_at = Instant::now().checked_sub(Duration::from_millis(lag)).unwrap_or_else(Instant::now);
            notifier.deliver(w.topic, Event { payload: w.payload, committed_at });
            "delivered"
        }
        Err(_) => "malformed",
    };
    if let Some(m) = metrics {
        m.messages.with_label_values(&["in", outcome]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_always_maps_to_the_same_channel() {
        let a = channel(&Topic::Login("phrase".into()));
        assert_eq!(a, channel(&Topic::Login("phrase".into())));
        let all: std::collections::HashSet<_> = (0..200).map(|i| channel(&Topic::Login(format!("p{i}")))).collect();
        assert_eq!(all.len(), SHARDS as usize, "the topics spread over every channel");
        assert_eq!(with_protocol_3("redis://h:1"), "redis://h:1/?protocol=3");
    }
}
