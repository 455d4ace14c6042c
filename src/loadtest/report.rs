//! The result of a load test, as text for people and JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Requests that got no HTTP answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Refused, reset or closed connections.
    pub connection: u64,
    /// No complete answer within `--timeout`.
    pub timeout: u64,
    /// Malformed answers.
    pub other: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, other: &ErrorCounts) {
        self.connection += other.connection;
        self.timeout += other.timeout;
        self.other += other.other;
    }

    pub fn total(&self) -> u64 {
        self.connection + self.timeout + self.other
    }
}

/// Distribution of a time, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// From a histogram of microseconds; `None` when nothing was recorded.
    pub fn of(micros: &Histogram<u64>) -> Option<Summary> {
        if micros.is_empty() {
            return None;
        }
        let ms = |value: u64| value as f64 / 1000.0;
        Some(Summary {
            count: micros.len(),
            min: ms(micros.min()),
            mean: micros.mean() / 1000.0,
            p50: ms(micros.value_at_quantile(0.50)),
            p95: ms(micros.value_at_quantile(0.95)),
            p99: ms(micros.value_at_quantile(0.99)),
            max: ms(micros.max()),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  (mean {:.3})",
            self.min, self.p50, self.p95, self.p99, self.max, self.mean
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Requests finished, whatever their outcome.
    pub requests: u64,
    pub concurrency: usize,
    pub elapsed_seconds: f64,
    pub requests_per_second: f64,
    /// From sending a request to the last byte of its answer, over answered requests.
    pub latency_ms: Option<Summary>,
    /// From sending a request to the first body bytes (with `--stream` only).
    pub ttfb_ms: Option<Summary>,
    /// Answers by HTTP status.
    pub status_counts: BTreeMap<String, u64>,
    pub errors: ErrorCounts,
}

impl Report {
    /// Answers with a 2xx status.
    pub fn successes(&self) -> u64 {
        self.status_counts
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .map(|(_, count)| count)
            .sum()
    }

    /// Requests that did not end in a 2xx answer.
    pub fn failures(&self) -> u64 {
        self.requests.saturating_sub(self.successes())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Requests      {} in {:.2} s at concurrency {}: {:.1} req/s",
            self.requests, self.elapsed_seconds, self.concurrency, self.requests_per_second
        )?;
        match &self.latency_ms {
            Some(latency) => writeln!(f, "Latency (ms)  {latency}")?,
            None => writeln!(f, "Latency (ms)  no answers")?,
        }
        if let Some(ttfb) = &self.ttfb_ms {
            writeln!(f, "TTFB (ms)     {ttfb}")?;
        }
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(status, count)| format!("{status} × {count}"))
            .collect();
        writeln!(
            f,
            "Status codes  {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            }
        )?;
        writeln!(
            f,
            "Errors        {} non-2xx; no answer: {} connection, {} timeout, {} other",
            self.failures().saturating_sub(self.errors.total()),
            self.errors.connection,
            self.errors.timeout,
            self.errors.other
        )
    }
}
