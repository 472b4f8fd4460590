//! Per-client-IP rate limits (`limits.*`), and who the client is behind trusted proxies.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use sigil_engine::config::{LimitsConfig, RateLimit};

/// The routes that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    FluxPhrase,
    FluxVerifyLogin,
    FluxProvideSign,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Self::FluxPhrase => "flux_phrase",
            Self::FluxVerifyLogin => "flux_verifylogin",
            Self::FluxProvideSign => "flux_providesign",
        }
    }
}

/// A quota of `count` per `per`, with the whole count available as a burst.
fn quota(limit: RateLimit) -> Quota {
    let count = NonZeroU32::new(limit.count).unwrap_or(NonZeroU32::MIN);
    let period = limit.per / limit.count.max(1);
    Quota::with_period(period.max(Duration::from_nanos(1))).map_or(Quota::per_second(count), |q| q.allow_burst(count))
}

pub struct Limits {
    enabled: bool,
    trusted: Vec<IpNet>,
    phrase: DefaultKeyedRateLimiter<IpAddr>,
    verifylogin: DefaultKeyedRateLimiter<IpAddr>,
    providesign: DefaultKeyedRateLimiter<IpAddr>,
    rejected: prometheus::IntCounterVec,
}

impl Limits {
    pub fn new(config: &LimitsConfig, trusted: &[String], registry: &prometheus::Registry) -> Result<Arc<Self>, String> {
        let trusted = trusted
            .iter()
            .map(|t| t.parse::<IpNet>().or_else(|_| t.parse::<IpAddr>().map(IpNet::from)).map_err(|e| format!("{t}: {e}")))
            .collect::<Result<_, _>>()?;
        let rejected = prometheus::IntCounterVec::new(
            prometheus::Opts::new("sigil_rate_limited_total", "Requests refused by a rate limit, by limit"),
            &["limit"],
        )
        .map_err(|e| e.to_string())?;
        registry.register(Box::new(rejected.clone())).map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            enabled: config.enabled,
            trusted,
            phrase: DefaultKeyedRateLimiter::keyed(quota(config.flux_phrase)),
            verifylogin: DefaultKeyedRateLimiter::keyed(quota(config.flux_verifylogin)),
            providesign: DefaultKeyedRateLimiter::keyed(quota(config.flux_providesign)),
            rejected,
        }))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
    /// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
        let client = forwarded
            .rsplit(',')
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .find(|ip| !self.is_trusted(*ip));
        Some(client.unwrap_or(peer))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// `Err(wait)` if the client is over the limit for `route`.
    pub fn check(&self, route: Limited, req: &HttpRequest) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        let Some(ip) = self.client_ip(req) else { return Ok(()) };
        let limiter = match route {
            Limited::FluxPhrase => &self.phrase,
            Limited::FluxVerifyLogin => &self.verifylogin,
            Limited::FluxProvideSign => &self.providesign,
        };
        limiter.check_key(&ip).map_err(|not_until| {
            self.rejected.with_label_values(&[route.label()]).inc();
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts a refusal by a limit kept elsewhere (the store-backed account limits).
    pub fn count_rejection(&self, label: &str) {
        self.rejected.with_label_values(&[label]).inc();
    }

    /// Forgets clients that have not been seen for a while, so the tables stay small.
    pub fn shrink(&self) {
        self.phrase.retain_recent();
        self.verifylogin.retain_recent();
        self.providesign.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limits(trusted: &[&str], enabled: bool) -> Arc<Limits> {
        let config = LimitsConfig { enabled, flux_verifylogin: RateLimit::new(3, 60), ..LimitsConfig::default() };
        let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        Limits::new(&config, &trusted, &prometheus::Registry::new()).unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let l = limits(&["10.0.0.0/8"], true);
        let direct = TestRequest::default().peer_addr("192.0.2.7:1000".parse().unwrap()).insert_header(("x-forwarded-for", "1.2.3.4")).to_http_request();
        assert_eq!(l.client_ip(&direct), Some("192.0.2.7".parse().unwrap()));
        let proxied = TestRequest::default()
            .peer_addr("10.1.2.3:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.2.3.4, 10.9.9.9"))
            .to_http_request();
        assert_eq!(l.client_ip(&proxied), Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn limits_per_ip_and_switch_off() {
        let l = limits(&[], true);
        let a = TestRequest::default().peer_addr("192.0.2.1:1".parse().unwrap()).to_http_request();
        let b = TestRequest::default().peer_addr("192.0.2.2:1".parse().unwrap()).to_http_request();
        for _ in 0..3 {
            assert!(l.check(Limited::FluxVerifyLogin, &a).is_ok());
        }
        let wait = l.check(Limited::FluxVerifyLogin, &a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(l.check(Limited::FluxVerifyLogin, &b).is_ok(), "another client is not affected");
        assert!(l.check(Limited::FluxPhrase, &a).is_ok(), "another route is not affected");
        let off = limits(&[], false);
        for _ in 0..10 {
            assert!(off.check(Limited::FluxVerifyLogin, &a).is_ok());
        }
    }
}
