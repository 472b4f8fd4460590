//! Delivery of SMS and email codes (`sms.sender`).
//!
//! - `log` (the default, for development and tests): the message goes to the log and to an
//!   in-memory outbox that `GET /api/admin/outbox` reads (spec C.1). The outbox is memory, not
//!   the store: the store keeps only hashes of codes. It holds the last 1 000 messages.
//! - `webhook`: the message is POSTed as JSON (`{"to","channel","purpose","body"}`) to
//!   `sms.webhook_url`, with a timeout per try and retries with a doubling pause. Delivery runs
//!   in the background: a login does not wait for the SMS gateway. Failures are logged (without
//!   the code) and counted in `sigil_messages_total{sender,outcome}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use sigil_engine::config::{SmsConfig, SmsSender};
use sigil_engine::store::Millis;

/// How many messages the `log` outbox keeps.
const OUTBOX_KEEP: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
}

/// One message, as the outbox lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub to: String,
    pub channel: Channel,
    /// What the code is for: `2fa`, `ip-authorization`…
    pub purpose: String,
    pub body: String,
    pub code: String,
    /// Unix milliseconds.
    pub at: Millis,
}

#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    config: SmsConfig,
    outbox: Mutex<VecDeque<Message>>,
    client: reqwest::Client,
    sent: Option<IntCounterVec>,
}

impl Sender {
    pub fn new(config: SmsConfig, registry: Option<&Registry>) -> Result<Self, String> {
        let sent = match registry {
            Some(r) => {
                let c = IntCounterVec::new(
                    Opts::new("sigil_messages_total", "SMS and email codes handed to the sender, by sender and outcome"),
                    &["sender", "outcome"],
                )
                .map_err(|e| e.to_string())?;
                r.register(Box::new(c.clone())).map_err(|e| e.to_string())?;
                Some(c)
            }
            None => None,
        };
        let client = reqwest::Client::builder().timeout(config.webhook_timeout.0).build().map_err(|e| e.to_string())?;
        Ok(Self { inner: Arc::new(Inner { config, outbox: Mutex::new(VecDeque::new()), client, sent }) })
    }

    fn count(&self, sender: &str, outcome: &str) {
        if let Some(c) = &self.inner.sent {
            c.with_label_values(&[sender, outcome]).inc();
        }
    }

    /// Whether the outbox is kept (the `log` sender).
    pub fn keeps_outbox(&self) -> bool {
        self.inner.config.sender == SmsSender::Log
    }

    /// Hands `message` to the configured sender; returns at once.
    pub fn send(&self, message: Message) {
        match self.inner.config.sender {
            SmsSender::Log => {
                // The log sender exists to show codes to a developer: this line carries it.
                tracing::info!(to = %message.to, channel = ?message.channel, purpose = %message.purpose, body = %message.body, "message (log sender)");
                let mut outbox = self.inner.outbox.lock().unwrap_or_else(PoisonError::into_inner);
                if outbox.len() >= OUTBOX_KEEP {
                    outbox.pop_front();
                }
                outbox.push_back(message);
                self.count("log", "sent");
            }
            SmsSender::Webhook => {
                let this = self.clone();
                tokio::spawn(async move { this.post(message).await });
            }
        }
    }

    async fn post(&self, message: Message) {
        let Some(url) = self.inner.config.webhook_url.clone() else {
            self.count("webhook", "failed");
            return;
        };
        let body = serde_json::json!({"to": message.to, "channel": message.channel, "purpose": message.purpose, "body": message.body});
        let mut pause = Duration::from_millis(200);
        for attempt in 0..=self.inner.config.webhook_retries {
            match self.inner.client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    self.count("webhook", "sent");
                    return;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, to = %message.to, "message webhook refused"),
                Err(e) => tracing::warn!(error = %e.without_url(), attempt, to = %message.to, "message webhook failed"),
            }
            if attempt < self.inner.config.webhook_retries {
                self.count("webhook", "retried");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        self.count("webhook", "failed");
    }

    /// The outbox, oldest first, optionally only the messages to `to`.
    pub fn outbox(&self, to: Option<&str>) -> Vec<Message> {
        let outbox = self.inner.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.iter().filter(|m| to.is_none_or(|t| m.to == t)).cloned().collect()
    }
}
