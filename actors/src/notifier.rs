//! The notifier: websocket subscriptions by topic, and one event fanned out to all of them.
//!
//! A websocket task subscribes *before* it looks at the store, so an event committed between
//! its look and its wait is never missed; it unsubscribes when its client goes away or its
//! topic expires. A published event reaches every current subscriber of the topic once, and
//! the topic is then empty (Flux websockets send one frame and close).

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
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

#[derive(Message)]
#[rtype(result = "(u64, oneshot::Receiver<Event>)")]
pub struct Subscribe(pub Topic);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub Topic, pub u64);

/// An event committed on this node: delivered here, and (in cluster mode) to the other nodes.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Publish(pub Topic, pub Event);

/// An event another node committed (from the relay): delivered here only.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Deliver(pub Topic, pub Event);

/// Cluster mode: send every published event to the other nodes through `Relay`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachRelay(pub crate::relay::Relay);

#[derive(Default)]
pub struct Notifier {
    topics: HashMap<Topic, Vec<(u64, oneshot::Sender<Event>)>>,
    next_id: u64,
    metrics: Option<ActorMetrics>,
    relay: Option<crate::relay::Relay>,
}

impl Notifier {
    pub fn new(metrics: Option<ActorMetrics>) -> Self {
        Self { metrics, ..Self::default() }
    }

    fn count(&self) {
        if let Some(m) = &self.metrics {
            m.subscriptions.set(self.topics.values().map(Vec::len).sum::<usize>() as i64);
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;
}

impl Handler<Subscribe> for Notifier {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe(topic): Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        let subscribers = self.topics.entry(topic).or_default();
        // Drop subscribers whose websocket is already gone before adding one.
        subscribers.retain(|(_, tx)| !tx.is_closed());
        subscribers.push((self.next_id, tx));
        self.count();
        MessageResult((self.next_id, rx))
    }
}

impl Handler<Unsubscribe> for Notifier {
    type Result = ();

    fn handle(&mut self, Unsubscribe(topic, id): Unsubscribe, _: &mut Context<Self>) {
        if let Some(subscribers) = self.topics.get_mut(&topic) {
            subscribers.retain(|(sid, _)| *sid != id);
            if subscribers.is_empty() {
                self.topics.remove(&topic);
            }
        }
        self.count();
    }
}

impl Handler<Publish> for Notifier {
    type Result = usize;

    fn handle(&mut self, Publish(topic, event): Publish, _: &mut Context<Self>) -> usize {
        if let Some(relay) = &self.relay {
            relay.send(&topic, &event);
        }
        self.deliver(topic, event)
    }
}

impl Handler<Deliver> for Notifier {
    type Result = usize;

    fn handle(&mut self, Deliver(topic, event): Deliver, _: &mut Context<Self>) -> usize {
        self.deliver(topic, event)
    }
}

impl Handler<AttachRelay> for Notifier {
    type Result = ();

    fn handle(&mut self, AttachRelay(relay): AttachRelay, _: &mut Context<Self>) {
        self.relay = Some(relay);
    }
}

impl Notifier {
    /// Hands `event` to every current subscriber of `topic` once; the topic is then empty.
    fn deliver(&mut self, topic: Topic, event: Event) -> usize {
        let Some(subscribers) = self.topics.remove(&topic) else { return 0 };
        let mut delivered = 0;
        for (_, tx) in subscribers {
            if tx.send(event.clone()).is_ok() {
                delivered += 1;
            }
        }
        self.count();
        delivered
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
        let n = Notifier::default().start();
        let topic = Topic::Sign("id".into());
        let (_, a) = n.send(Subscribe(topic.clone())).await.unwrap();
        let (_, b) = n.send(Subscribe(topic.clone())).await.unwrap();
        let (_, other) = n.send(Subscribe(Topic::Sign("other".into()))).await.unwrap();
        assert_eq!(n.send(Publish(topic.clone(), event())).await.unwrap(), 2);
        assert!(matches!(a.await.unwrap().payload, Payload::Signature(_)));
        assert!(matches!(b.await.unwrap().payload, Payload::Signature(_)));
        assert_eq!(n.send(Publish(topic, event())).await.unwrap(), 0, "the topic is consumed");
        drop(other);
    }

    #[actix_web::test]
    async fn unsubscribed_and_dropped_subscribers_get_nothing() {
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let n = Notifier::new(Some(metrics.clone())).start();
        let topic = Topic::Login("p".into());
        let (id, _rx) = n.send(Subscribe(topic.clone())).await.unwrap();
        assert_eq!(metrics.subscriptions.get(), 1);
        n.send(Unsubscribe(topic.clone(), id)).await.unwrap();
        assert_eq!(metrics.subscriptions.get(), 0);
        let (_, dropped) = n.send(Subscribe(topic.clone())).await.unwrap();
        drop(dropped);
        assert_eq!(n.send(Publish(topic, event())).await.unwrap(), 0);
    }
}
