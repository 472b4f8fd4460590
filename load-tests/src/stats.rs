//! Latency histograms, error counts and the report.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// What one worker saw; workers' stats are merged at the end.
pub struct Stats {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    /// Latencies from 1 µs to 60 s at 3 significant digits.
    pub fn new() -> Result<Self, String> {
        let latency = Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        Ok(Self { latency, ok: 0, errors: BTreeMap::new() })
    }

    pub fn record(&mut self, took: Duration, outcome: Result<(), String>) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.latency.record(micros.min(60_000_000));
        match outcome {
            Ok(()) => self.ok += 1,
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }
}

/// The figures every scenario reports.
pub struct Report {
    pub scenario: String,
    pub elapsed: Duration,
    pub stats: Stats,
    /// Scenario-specific figures (e.g. memory per socket).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn ms(&self, q: f64) -> f64 {
        self.stats.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn throughput(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<16} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
            "scenario", "ok", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        out.push_str(&format!(
            "{:<16} {:>9} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8}\n",
            self.scenario,
            self.stats.ok,
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.stats.latency.max() as f64 / 1000.0,
            self.stats.total() - self.stats.ok,
        ));
        for (kind, n) in &self.stats.errors {
            out.push_str(&format!("  error {kind}: {n}\n"));
        }
        for (k, v) in &self.extra {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ok": self.stats.ok,
            "throughput_per_s": self.throughput(),
            "latency_ms": {
                "p50": self.ms(0.5), "p90": self.ms(0.9), "p99": self.ms(0.99), "p99_9": self.ms(0.999),
                "max": self.stats.latency.max() as f64 / 1000.0, "mean": self.stats.latency.mean() / 1000.0,
            },
            "errors": self.stats.errors,
            "extra": self.extra,
        })
    }

    /// The histogram in HdrHistogram's V2 log format (base64), for HdrHistogram tools.
    pub fn hdr(&self) -> Result<Vec<u8>, String> {
        use hdrhistogram::serialization::{Serializer as _, V2Serializer};
        let mut out = Vec::new();
        V2Serializer::new().serialize(&self.stats.latency, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}
