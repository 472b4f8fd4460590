//! The notifier: websocket subscriptions by topic, and one event fanned out to all of them.
//!
//! A websocket task subscribes *before* it looks at the store, so an event committed between
//! its look and its wait is never missed; it unsubscribes when its client goes away or its
//! topic expires. A published event reaches every current subscriber of the topic once, and
//! the topic is then empty (Flux websockets send one frame and close).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use sigil_engine::flux::session::{FluxSession, ProvidedSignature};
use tokio::sync::oneshot;

use crate::metrics::ActorMetrics;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Topic {
    /// `/ws/id/{phrase}`: a login with this phrase.
    Login(String),
    /// `/ws/sign/{identifier}`: a signature provided for this identifier.
    Sign(String),
    /// `/v1/auth/authorize-ip/ws`: the new-location login with this wait id was approved.
    IpAuthorized(String),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Payload {
    Login { session: FluxSession, signature: String },
    Signature(ProvidedSignature),
    /// The waiting login may now take its session.
    IpAuthorized,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub payload: Payload,
    /// Where the push latency is measured from: the signature verified (logins) or the
    /// signature stored (provided signatures).
    pub committed_at: Instant,
}

/// The subscriptions of one node, shared by the threads that publish (the registry's syncer
/// and committer, the cluster relay) and the websocket tasks that wait.
///
/// Not an actor: a push is a map lookup and a oneshot send, done under a short lock by the
/// thread that committed the event, so the event goes straight from the fsync to the waiting
/// socket's task without passing through a notifier thread (one hand-off fewer per push;
/// docs/benchmarks.md). Cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscriptions: Mutex<Subscriptions>,
    metrics: Option<ActorMetrics>,
    relay: OnceLock<crate::relay::Relay>,
}

#[derive(Default)]
struct Subscriptions {
    topics: HashMap<Topic, Vec<(u64, oneshot::Sender<Event>)>>,
    next_id: u64,
    /// Subscribers in `topics` (kept, not counted at every change: 100k sockets wait at once).
    count: usize,
}

impl Notifier {
    pub fn new(metrics: Option<ActorMetrics>) -> Self {
        Self { inner: Arc::new(Inner { metrics, ..Inner::default() }) }
    }

    /// The state is a map of senders that a panic cannot leave half-changed: a poisoned lock
    /// is as good as a clean one.
    fn lock(&self) -> MutexGuard<'_, Subscriptions> {
        self.inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn gauge(&self, count: usize) {
        if let Some(m) = &self.inner.metrics {
            m.subscriptions.set(count as i64);
        }
    }

    /// Waits for the next event of `topic`: answers the subscription's id (for
    /// [`Notifier::unsubscribe`]) and where the event will arrive.
    pub fn subscribe(&self, topic: Topic) -> (u64, oneshot::Receiver<Event>) {
        let (tx, rx) = oneshot::channel();
        let mut subs = self.lock();
        subs.next_id += 1;
        let id = subs.next_id;
        let subscribers = subs.topics.entry(topic).or_default();
        // Drop subscribers whose websocket is already gone before adding one.
        let before = subscribers.len();
        subscribers.retain(|(_, tx)| !tx.is_closed());
        subscribers.push((id, tx));
        let added = subscribers.len();
        subs.count = subs.count + added - before;
        let count = subs.count;
        drop(subs);
        self.gauge(count);
        (id, rx)
    }

    pub fn unsubscribe(&self, topic: &Topic, id: u64) {
        let mut subs = self.lock();
        let mut removed = 0;
        if let Some(subscribers) = subs.topics.get_mut(topic) {
            let before = subscribers.len();
            subscribers.retain(|(sid, _)| *sid != id);
            removed = before - subscribers.len();
            if subscribers.is_empty() {
                subs.topics.remove(topic);
            }
        }
        subs.count -= removed;
        let count = subs.count;
        drop(subs);
        self.gauge(count);
    }

    /// An event committed on this node: delivered here, and (in cluster mode) sent to the other
    /// nodes. Answers how many local subscribers got it.
    pub fn publish(&self, topic: Topic, event: Event) -> usize {
        if let Some(relay) = self.inner.relay.get() {
            relay.send(&topic, &event);
        }
        self.deliver(topic, event)
    }

    /// An event another node committed (from the relay): delivered here only. Every current
    /// subscriber of `topic` gets it once; the topic is then empty.
    pub fn deliver(&self, topic: Topic, event: Event) -> usize {
        let mut subs = self.lock();
        let Some(subscribers) = subs.topics.remove(&topic) else { return 0 };
        subs.count -= subscribers.len();
        let count = subs.count;
        drop(subs);
        self.gauge(count);
        let mut delivered = 0;
        for (_, tx) in subscribers {
            if !tx.is_closed() && tx.send(event.clone()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Cluster mode: send every published event to the other nodes through `relay` (once).
    pub fn attach_relay(&self, relay: crate::relay::Relay) {
        if self.inner.relay.set(relay).is_err() {
            tracing::warn!("a second relay was not attached");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            payload: Payload::Signature(ProvidedSignature {
                signature: "sig".into(),
                identifier: "id".into(),
                created_at: 1,
                expire_at: 2,
                id: "x".into(),
            }),
            committed_at: Instant::now(),
        }
    }

    #[actix_web::test]
    async fn one_event_reaches_every_subscriber_once() {
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let n = Notifier::new(Some(metrics.clone()));
        let topic = Topic::Sign("id".into());
        let (_, a) = n.subscribe(topic.clone());
        let (_, b) = n.subscribe(topic.clone());
        let (_, other) = n.subscribe(Topic::Sign("other".into()));
        assert_eq!(metrics.subscriptions.get(), 3);
        assert_eq!(n.publish(topic.clone(), event()), 2);
        assert_eq!(metrics.subscriptions.get(), 1, "the delivered ones are gone");
        assert!(matches!(a.await.unwrap().payload, Payload::Signature(_)));
        assert!(matches!(b.await.unwrap().payload, Payload::Signature(_)));
        assert_eq!(n.publish(topic, event()), 0, "the topic is consumed");
        drop(other);
    }

    /// Publishers and subscribers on many threads at once: every subscriber of a published
    /// topic gets the event exactly once, and the subscription gauge ends at zero.
    #[test]
    fn concurrent_publishers_and_subscribers_lose_nothing() {
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let n = Notifier::new(Some(metrics.clone()));
        let receivers: Vec<_> = std::thread::scope(|s| {
            let subscribers: Vec<_> = (0..4)
                .map(|t| {
                    let n = n.clone();
                    s.spawn(move || (0..250).map(|i| n.subscribe(Topic::Login(format!("{t}-{i}"))).1).collect::<Vec<_>>())
                })
                .collect();
            subscribers.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(metrics.subscriptions.get(), 1000);
        let delivered: usize = std::thread::scope(|s| {
            let publishers: Vec<_> = (0..4)
                .map(|t| {
                    let n = n.clone();
                    s.spawn(move || (0..250).map(|i| n.publish(Topic::Login(format!("{t}-{i}")), event())).sum::<usize>())
                })
                .collect();
            publishers.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(delivered, 1000);
        assert_eq!(metrics.subscriptions.get(), 0);
        for mut rx in receivers {
            assert!(rx.try_recv().is_ok(), "every subscriber got its event");
        }
    }

    #[actix_web::test]
    async fn unsubscribed_and_dropped_subscribers_get_nothing() {
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let n = Notifier::new(Some(metrics.clone()));
        let topic = Topic::Login("p".into());
        let (id, _rx) = n.subscribe(topic.clone());
        assert_eq!(metrics.subscriptions.get(), 1);
        n.unsubscribe(&topic, id);
        assert_eq!(metrics.subscriptions.get(), 0);
        let (_, dropped) = n.subscribe(topic.clone());
        drop(dropped);
        assert_eq!(n.publish(topic.clone(), event()), 0);
        // A subscriber that went away is dropped when the next one comes.
        let (_, gone) = n.subscribe(topic.clone());
        drop(gone);
        let (_, _kept) = n.subscribe(topic);
        assert_eq!(metrics.subscriptions.get(), 1);
    }
}
