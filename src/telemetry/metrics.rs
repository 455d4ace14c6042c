//! Running totals: per proxy and minute (persisted as roll-ups), and the Prometheus series.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, NaiveDateTime, TimeZone, Timelike, Utc,
};

use crate::db::metric_rollups::{self, Spend};
use crate::db::models::{NewLogRow, RollupRow};
use crate::db::writer::{Drops, WriteKind};
use crate::db::{self, DbError, DbPool};

/// Upper bounds of the latency buckets, in milliseconds; one more bucket catches the rest. Fine
/// below a millisecond for cache hits and between half a second and ten for LLM calls, where a
/// quantile read off a coarse bucket would say little. Roll-ups store counts by position: a
/// change here needs a migration that moves stored counts (see `…_finer_latency_buckets`).
pub const LATENCY_BOUNDS_MS: [f64; 27] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 1500.0,
    2000.0, 2500.0, 3000.0, 4000.0, 5000.0, 7500.0, 10000.0, 15000.0, 20000.0, 30000.0, 60000.0,
    120000.0,
];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// Minutes kept in memory (the dashboard's hour, with room); older ones live only in SQLite.
const MEMORY_MINUTES: i64 = 120;
/// Minutes averaged for "requests per minute".
const RPM_MINUTES: i64 = 5;

#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub requests: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub injected: u64,
    pub upstream_failures: u64,
    pub latency_sum_ms: f64,
    pub buckets: [u64; BUCKETS],
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// What cache hits would have cost.
    pub saved_usd: f64,
    dirty: bool,
}

impl Rollup {
    fn add(&mut self, row: &NewLogRow) {
        self.requests += 1;
        if row.status >= 400 {
            self.errors += 1;
        }
        if row.cache == "hit" {
            self.cache_hits += 1;
        }
        match row.failure.as_deref() {
            Some("upstream_error") => self.upstream_failures += 1,
            Some("proxy_error" | "spend_cap") | None => {}
            Some(_) => self.injected += 1,
        }
        self.latency_sum_ms += row.latency_ms;
        self.buckets[bucket(row.latency_ms)] += 1;
        self.input_tokens += row.input_tokens.unwrap_or(0).unsigned_abs();
        self.output_tokens += row.output_tokens.unwrap_or(0).unsigned_abs();
        let (cost, saved) = cost_and_saving(row);
        self.cost_usd += cost;
        self.saved_usd += saved;
        self.dirty = true;
    }

    pub fn merge(&mut self, other: &Rollup) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.injected += other.injected;
        self.upstream_failures += other.upstream_failures;
        self.latency_sum_ms += other.latency_sum_ms;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.saved_usd += other.saved_usd;
    }

    /// The share of requests answered from the cache; 0 without requests.
    pub fn cache_hit_rate(&self) -> f64 {
        ratio(self.cache_hits, self.requests)
    }

    /// The share of requests answered with an error status; 0 without requests.
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    /// The latency below which `quantile` of requests fall, estimated as Prometheus'
    /// `histogram_quantile` does: linearly within the bucket the quantile falls in. Beyond the
    /// last bound there is nothing to interpolate to, so that bound is the estimate.
    pub fn latency_quantile(&self, quantile: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = quantile.clamp(0.0, 1.0) * total as f64;
        let mut below = 0;
        for (i, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                    return LATENCY_BOUNDS_MS.last().copied();
                };
                let lower = if i == 0 {
                    0.0
                } else {
                    LATENCY_BOUNDS_MS[i - 1]
                };
                let within = (rank - below as f64) / count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += count;
        }
        None
    }

    fn to_row(&self, proxy_id: i32, minute: NaiveDateTime) -> RollupRow {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        RollupRow {
            proxy_id,
            minute,
            requests: signed(self.requests),
            errors: signed(self.errors),
            cache_hits: signed(self.cache_hits),
            injected_failures: signed(self.injected),
            upstream_failures: signed(self.upstream_failures),
            latency_sum_ms: self.latency_sum_ms,
            latency_histogram: serde_json::to_string(&self.buckets.to_vec()).unwrap_or_default(),
            input_tokens: signed(self.input_tokens),
            output_tokens: signed(self.output_tokens),
            cost_usd: self.cost_usd,
            saved_usd: self.saved_usd,
        }
    }

    pub fn from_row(row: &RollupRow) -> Self {
        let mut buckets = [0; BUCKETS];
        let stored: Vec<u64> = serde_json::from_str(&row.latency_histogram).unwrap_or_default();
        for (slot, count) in buckets.iter_mut().zip(stored) {
            *slot = count;
        }
        Rollup {
            requests: row.requests.unsigned_abs(),
            errors: row.errors.unsigned_abs(),
            cache_hits: row.cache_hits.unsigned_abs(),
            injected: row.injected_failures.unsigned_abs(),
            upstream_failures: row.upstream_failures.unsigned_abs(),
            latency_sum_ms: row.latency_sum_ms,
            buckets,
            input_tokens: row.input_tokens.unsigned_abs(),
            output_tokens: row.output_tokens.unsigned_abs(),
            cost_usd: row.cost_usd,
            saved_usd: row.saved_usd,
            dirty: false,
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The numbers of the last 24 hours, and the money of today and of this month (UTC): stored
/// minutes up to where memory starts, memory's (newer) from there.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub day: Rollup,
    pub today: Spend,
    pub month: Spend,
}

/// Midnight (UTC) of the day of `now`.
pub fn start_of_day(now: DateTime<Utc>) -> NaiveDateTime {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or(now.naive_utc())
}

fn start_of_month(now: DateTime<Utc>) -> NaiveDateTime {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(now.naive_utc(), |t| t.naive_utc())
}

/// The `# HELP` and `# TYPE` lines that open a metric family in the Prometheus text format.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// What a logged request cost and what it saved: a hit's cost was avoided, not spent.
fn cost_and_saving(row: &NewLogRow) -> (f64, f64) {
    let cost = row.cost_usd.unwrap_or(0.0);
    if row.cache == "hit" {
        (0.0, cost)
    } else {
        (cost, 0.0)
    }
}

fn bucket(latency_ms: f64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|bound| *bound < latency_ms)
}

pub fn minute_of(time: DateTime<Utc>) -> NaiveDateTime {
    time.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(time)
        .naive_utc()
}

/// A proxy's traffic of the last minutes, for its card.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecentTraffic {
    pub requests_per_minute: f64,
    /// Over the last hour; `None` without requests.
    pub error_rate: Option<f64>,
}

/// A request counter's labels; names are kept once per proxy, not per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Series {
    proxy: i32,
    status: i32,
    cache: CacheLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum CacheLabel {
    Hit,
    Miss,
    Bypass,
}

impl CacheLabel {
    fn of(cache: &str) -> Self {
        match cache {
            "hit" => CacheLabel::Hit,
            "miss" => CacheLabel::Miss,
            _ => CacheLabel::Bypass,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CacheLabel::Hit => "hit",
            CacheLabel::Miss => "miss",
            CacheLabel::Bypass => "bypass",
        }
    }
}

/// One of a [`ProxySpend`]'s amounts of money.
type SpendAmount = fn(&ProxySpend) -> f64;

/// Tokens and money per proxy since the process started.
#[derive(Default)]
struct ProxySpend {
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    saved_usd: f64,
}

#[derive(Default)]
struct Prometheus {
    requests: HashMap<Series, u64>,
    /// Proxy id → (name, provider) as last seen.
    names: HashMap<i32, (String, String)>,
    injected: HashMap<(i32, String), u64>,
    spend: HashMap<i32, ProxySpend>,
    latency: [u64; BUCKETS],
    latency_sum_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    minutes: Mutex<BTreeMap<(NaiveDateTime, i32), Rollup>>,
    prometheus: Mutex<Prometheus>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Starts from what SQLite holds for the last minutes, so charts survive a restart.
    pub fn with_history(rows: &[RollupRow]) -> Self {
        let metrics = Metrics::default();
        {
            let mut minutes = lock(&metrics.minutes);
            for row in rows {
                minutes.insert((row.minute, row.proxy_id), Rollup::from_row(row));
            }
        }
        metrics
    }

    pub fn memory_window_start(now: DateTime<Utc>) -> NaiveDateTime {
        minute_of(now - ChronoDuration::minutes(MEMORY_MINUTES))
    }

    pub fn record(&self, row: &NewLogRow) {
        let minute = minute_of(row.timestamp.and_utc());
        lock(&self.minutes)
            .entry((minute, row.proxy_id))
            .or_default()
            .add(row);
        let mut prometheus = lock(&self.prometheus);
        *prometheus
            .requests
            .entry(Series {
                proxy: row.proxy_id,
                status: row.status,
                cache: CacheLabel::of(&row.cache),
            })
            .or_default() += 1;
        let known = prometheus
            .names
            .get(&row.proxy_id)
            .is_some_and(|(name, _)| *name == row.proxy_name);
        if !known {
            prometheus.names.insert(
                row.proxy_id,
                (row.proxy_name.to_string(), row.provider.to_string()),
            );
        }
        if let Some(kind) = row
            .failure
            .as_deref()
            .filter(|f| !matches!(*f, "upstream_error" | "proxy_error" | "spend_cap"))
        {
            *prometheus
                .injected
                .entry((row.proxy_id, kind.to_owned()))
                .or_default() += 1;
        }
        let spend = prometheus.spend.entry(row.proxy_id).or_default();
        spend.input_tokens += row.input_tokens.unwrap_or(0).unsigned_abs();
        spend.output_tokens += row.output_tokens.unwrap_or(0).unsigned_abs();
        let (cost, saved) = cost_and_saving(row);
        spend.cost_usd += cost;
        spend.saved_usd += saved;
        prometheus.latency[bucket(row.latency_ms)] += 1;
        prometheus.latency_sum_seconds += row.latency_ms / 1000.0;
    }

    /// Minutes changed since the last flush, as rows to upsert; forgets minutes that have left
    /// the memory window.
    pub fn take_dirty(&self, now: DateTime<Utc>) -> Vec<RollupRow> {
        let mut minutes = lock(&self.minutes);
        let keep_from = Self::memory_window_start(now);
        let rows = minutes
            .iter_mut()
            .filter(|(_, rollup)| rollup.dirty)
            .map(|((minute, proxy), rollup)| {
                rollup.dirty = false;
                rollup.to_row(*proxy, *minute)
            })
            .collect();
        minutes.retain(|(minute, _), _| *minute >= keep_from);
        rows
    }

    /// Per-minute totals from `from` on, of the proxies in `only` (all when `None`).
    fn minutes_since(
        &self,
        from: NaiveDateTime,
        only: Option<&[i32]>,
    ) -> BTreeMap<NaiveDateTime, Rollup> {
        let mut series: BTreeMap<NaiveDateTime, Rollup> = BTreeMap::new();
        for ((minute, proxy), rollup) in lock(&self.minutes).range((from, i32::MIN)..) {
            if only.is_none_or(|ids| ids.contains(proxy)) {
                series.entry(*minute).or_default().merge(rollup);
            }
        }
        series
    }

    /// Requests per minute over the last five minutes, and the error rate over the last hour.
    pub fn recent(&self, proxy: i32, now: DateTime<Utc>) -> RecentTraffic {
        let hour = self.minutes_since(minute_of(now - ChronoDuration::minutes(59)), Some(&[proxy]));
        let five_from = minute_of(now - ChronoDuration::minutes(4));
        let last_five: u64 = hour.range(five_from..).map(|(_, r)| r.requests).sum();
        let (requests, errors) = hour
            .values()
            .fold((0, 0), |(n, e), r| (n + r.requests, e + r.errors));
        RecentTraffic {
            requests_per_minute: last_five as f64 / 5.0,
            error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
        }
    }

    /// Requests of each of the last `minutes` minutes (the current one last), zeros included, of
    /// the proxies in `only` (all when `None`).
    pub fn requests_by_minute(
        &self,
        now: DateTime<Utc>,
        minutes: i64,
        only: Option<&[i32]>,
    ) -> Vec<(NaiveDateTime, u64)> {
        let from = minute_of(now - ChronoDuration::minutes(minutes - 1));
        let series = self.minutes_since(from, only);
        (0..minutes)
            .map(|i| {
                let minute = from + ChronoDuration::minutes(i);
                (minute, series.get(&minute).map_or(0, |r| r.requests))
            })
            .collect()
    }

    /// Requests per minute over the last five minutes, of the proxies in `only` (all when
    /// `None`).
    pub fn requests_per_minute(&self, now: DateTime<Utc>, only: Option<&[i32]>) -> f64 {
        let recent: u64 = self
            .minutes_since(
                minute_of(now - ChronoDuration::minutes(RPM_MINUTES - 1)),
                only,
            )
            .values()
            .map(|r| r.requests)
            .sum();
        recent as f64 / RPM_MINUTES as f64
    }

    /// The [`Usage`] of the proxies in `only` (all when `None`). Money is summed in SQLite (a
    /// month of minutes need not be loaded) up to where memory starts.
    pub async fn usage(
        &self,
        pool: &DbPool,
        now: DateTime<Utc>,
        only: Option<Vec<i32>>,
    ) -> Result<Usage, DbError> {
        let day_ago = minute_of(now - ChronoDuration::hours(24));
        let memory_from = Self::memory_window_start(now);
        let (today, month) = (start_of_day(now), start_of_month(now));
        let only_in_db = only.clone();
        let (stored, stored_today, stored_month) = db::run(pool, move |conn| {
            let only = only_in_db.as_deref();
            Ok((
                metric_rollups::since(conn, day_ago)?,
                metric_rollups::spend_between(conn, today, memory_from.max(today), only)?,
                metric_rollups::spend_between(conn, month, memory_from.max(month), only)?,
            ))
        })
        .await?;
        let only = only.as_deref();
        Ok(Usage {
            day: self.total_with(&stored, memory_from, only),
            today: self.spend_with(stored_today, today.max(memory_from), only),
            month: self.spend_with(stored_month, month.max(memory_from), only),
        })
    }

    /// `stored` plus the money of the in-memory minutes from `from` on.
    fn spend_with(&self, stored: Spend, from: NaiveDateTime, only: Option<&[i32]>) -> Spend {
        self.minutes_since(from, only)
            .values()
            .fold(stored, |spend, minute| Spend {
                cost_usd: spend.cost_usd + minute.cost_usd,
                saved_usd: spend.saved_usd + minute.saved_usd,
            })
    }

    /// In-memory minutes overlaid on stored ones (memory is newer), merged into one total.
    /// Only the proxies in `only` count (all when `None`).
    fn total_with(
        &self,
        stored: &[RollupRow],
        from: NaiveDateTime,
        only: Option<&[i32]>,
    ) -> Rollup {
        let counts = |proxy: &i32| only.is_none_or(|ids| ids.contains(proxy));
        let memory = lock(&self.minutes);
        let mut total = Rollup::default();
        for row in stored {
            if counts(&row.proxy_id) && !memory.contains_key(&(row.minute, row.proxy_id)) {
                total.merge(&Rollup::from_row(row));
            }
        }
        for ((_, proxy), rollup) in memory.range((from, i32::MIN)..) {
            if counts(proxy) {
                total.merge(rollup);
            }
        }
        total
    }

    /// The Prometheus text exposition of the proxies in `only` (all when `None`).
    pub fn prometheus(&self, in_flight: usize, drops: &Drops, only: Option<&[i32]>) -> String {
        let shown = |proxy: &i32| only.is_none_or(|ids| ids.contains(proxy));
        let prometheus = lock(&self.prometheus);
        let mut out = String::new();
        let label = |value: &str| {
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        family(
            &mut out,
            "rubberduck_requests_total",
            "counter",
            "Requests through proxies.",
        );
        let unknown = (String::new(), String::new());
        let names = |proxy: i32| prometheus.names.get(&proxy).unwrap_or(&unknown);
        let mut series: Vec<_> = prometheus
            .requests
            .iter()
            .filter(|(s, _)| shown(&s.proxy))
            .collect();
        series.sort_by_key(|(s, _)| (s.proxy, s.status, s.cache));
        for (s, count) in series {
            let (proxy, provider) = names(s.proxy);
            let _ = writeln!(
                out,
                "rubberduck_requests_total{{proxy=\"{}\",provider=\"{}\",status=\"{}\",cache=\"{}\"}} {count}",
                label(proxy),
                label(provider),
                s.status,
                s.cache.as_str()
            );
        }
        family(
            &mut out,
            "rubberduck_request_duration_seconds",
            "histogram",
            "Time to answer a request through a proxy.",
        );
        let mut cumulative = 0;
        for (i, count) in prometheus.latency.iter().enumerate() {
            cumulative += count;
            let bound = LATENCY_BOUNDS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |ms| (ms / 1000.0).to_string());
            let _ = writeln!(
                out,
                "rubberduck_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "rubberduck_request_duration_seconds_sum {}",
            prometheus.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "rubberduck_request_duration_seconds_count {cumulative}"
        );
        family(
            &mut out,
            "rubberduck_in_flight_requests",
            "gauge",
            "Requests being answered now.",
        );
        let _ = writeln!(out, "rubberduck_in_flight_requests {in_flight}");
        family(
            &mut out,
            "rubberduck_injected_failures_total",
            "counter",
            "Failures injected by failure simulation.",
        );
        let mut injected: Vec<_> = prometheus
            .injected
            .iter()
            .filter(|((proxy, _), _)| shown(proxy))
            .collect();
        injected.sort();
        for ((proxy, kind), count) in injected {
            let _ = writeln!(
                out,
                "rubberduck_injected_failures_total{{proxy=\"{}\",kind=\"{}\"}} {count}",
                label(&names(*proxy).0),
                label(kind)
            );
        }
        let mut spend: Vec<_> = prometheus
            .spend
            .iter()
            .filter(|(proxy, _)| shown(proxy))
            .collect();
        spend.sort_by_key(|(proxy, _)| **proxy);
        family(
            &mut out,
            "rubberduck_tokens_total",
            "counter",
            "Tokens of proxied requests, from the providers' usage.",
        );
        for (proxy, totals) in &spend {
            let proxy = label(&names(**proxy).0);
            let _ = writeln!(
                out,
                "rubberduck_tokens_total{{proxy=\"{proxy}\",direction=\"input\"}} {}",
                totals.input_tokens
            );
            let _ = writeln!(
                out,
                "rubberduck_tokens_total{{proxy=\"{proxy}\",direction=\"output\"}} {}",
                totals.output_tokens
            );
        }
        let money: [(&str, &str, SpendAmount); 2] = [
            (
                "rubberduck_cost_usd_total",
                "What requests that went upstream cost, in USD.",
                |totals| totals.cost_usd,
            ),
            (
                "rubberduck_cost_saved_usd_total",
                "What cache hits would have cost upstream, in USD.",
                |totals| totals.saved_usd,
            ),
        ];
        for (name, help, amount) in money {
            family(&mut out, name, "counter", help);
            for (proxy, totals) in &spend {
                let proxy = label(&names(**proxy).0);
                let _ = writeln!(out, "{name}{{proxy=\"{proxy}\"}} {}", amount(totals));
            }
        }
        // Server-wide: a lost write belongs to no one proxy's numbers (and a row refused for a
        // deleted proxy has no proxy left to show it under).
        family(
            &mut out,
            "rubberduck_dropped_writes_total",
            "counter",
            "Writes that never reached the database, by what they were and why they were lost.",
        );
        let all = drops.all();
        for (kind, reason, count) in &all {
            let _ = writeln!(
                out,
                "rubberduck_dropped_writes_total{{what=\"{}\",why=\"{}\"}} {count}",
                kind.as_str(),
                reason.as_str()
            );
        }
        family(
            &mut out,
            "rubberduck_log_entries_dropped_total",
            "counter",
            "Log entries lost for any reason (the sum of rubberduck_dropped_writes_total{what=\"log\"}).",
        );
        let logs: u64 = all
            .iter()
            .filter(|(kind, _, _)| *kind == WriteKind::Log)
            .map(|(_, _, count)| count)
            .sum();
        let _ = writeln!(out, "rubberduck_log_entries_dropped_total {logs}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_the_bucket_whose_bound_they_do_not_pass() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(0.1), 0);
        assert_eq!(bucket(0.11), 1);
        assert_eq!(bucket(1000.0), 13);
        assert_eq!(bucket(120000.0), LATENCY_BOUNDS_MS.len() - 1);
        assert_eq!(bucket(120000.1), LATENCY_BOUNDS_MS.len());
    }

    #[test]
    fn quantiles_are_interpolated_within_their_bucket() {
        let mut rollup = Rollup::default();
        // Four LLM calls between 1 and 1.5 s, one between 4 and 5 s.
        for ms in [1100.0, 1200.0, 1300.0, 1400.0, 4500.0] {
            rollup.buckets[bucket(ms)] += 1;
        }
        // The median is the 2.5th of four in (1000, 1500]: 1000 + 500 × 2.5 / 4.
        assert_eq!(rollup.latency_quantile(0.5), Some(1312.5));
        assert_eq!(rollup.latency_quantile(0.8), Some(1500.0));
        // The 4.75th request is three quarters into the one in (4000, 5000].
        assert_eq!(rollup.latency_quantile(0.95), Some(4750.0));
        assert_eq!(rollup.latency_quantile(0.0), Some(1000.0));
        assert_eq!(Rollup::default().latency_quantile(0.5), None);
    }

    #[test]
    fn quantiles_past_the_last_bound_are_that_bound() {
        let mut rollup = Rollup::default();
        rollup.buckets[bucket(500_000.0)] += 1;
        assert_eq!(rollup.latency_quantile(0.5), Some(120000.0));
    }
}
