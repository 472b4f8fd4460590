//! Health gates of `/id/loginphrase` (decision 14): a hook, not FluxOS's hard-wired checks.
//!
//! FluxOS refuses to issue login phrases while its node is unhealthy (Syncthing, Docker,
//! hardware tier, DOS state) and answers with bodies such as
//! `{"status":"error","data":{"code":100,"name":"DOS","message":"…"}}`; the web UI then falls
//! back to `/id/emergencyphrase`, which has no gates. sigil keeps that shape: an embedding
//! registers [`HealthGate`]s, the first refusal answers, and the emergency route skips them.
//! By default there are none: issuing a phrase is itself a durable store write, so "the store
//! is writable" is checked by every issue.

/// A gate's refusal, in FluxOS's error body shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<i64>,
    pub name: Option<String>,
    pub message: String,
}

/// One health check run before a login phrase is issued.
pub trait HealthGate: Send + Sync {
    fn check(&self) -> Result<(), Refusal>;
}

/// The gates of this node, run in order.
#[derive(Default)]
pub struct Gates(Vec<Box<dyn HealthGate>>);

impl Gates {
    pub fn new(gates: Vec<Box<dyn HealthGate>>) -> Self {
        Self(gates)
    }

    pub fn check(&self) -> Result<(), Refusal> {
        self.0.iter().try_for_each(|g| g.check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dos;
    impl HealthGate for Dos {
        fn check(&self) -> Result<(), Refusal> {
            Err(Refusal { code: Some(100), name: Some("DOS".into()), message: "Minimum hardware required for FluxNode tier not met".into() })
        }
    }
    struct Fine;
    impl HealthGate for Fine {
        fn check(&self) -> Result<(), Refusal> {
            Ok(())
        }
    }

    #[test]
    fn first_refusal_answers() {
        assert!(Gates::default().check().is_ok());
        assert!(Gates::new(vec![Box::new(Fine)]).check().is_ok());
        let refused = Gates::new(vec![Box::new(Fine), Box::new(Dos)]).check().unwrap_err();
        assert_eq!(refused.code, Some(100));
    }
}
