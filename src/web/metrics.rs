//! `GET /api/metrics` (dashboard numbers as JSON) and `GET /metrics` (Prometheus).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::db::metric_rollups::Spend;
use crate::db::{self, DbError};
use crate::telemetry::{Rollup, minute_of};

/// Minutes averaged for "requests per minute".
const RPM_MINUTES: i64 = 5;

#[derive(Debug, Serialize)]
pub struct ProxyCounts {
    pub total: usize,
    pub running: usize,
    pub stopped: usize,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub proxies: ProxyCounts,
    pub requests_total: u64,
    pub requests_per_minute: f64,
    pub cache_hits_total: u64,
    pub cache_hit_rate: f64,
    pub error_rate: f64,
    pub injected_failures_total: u64,
    pub upstream_failures_total: u64,
    pub in_flight: usize,
    pub input_tokens_total: u64,
    pub output_tokens_total: u64,
    pub cost_today_usd: f64,
    pub cost_month_usd: f64,
    /// What cache hits would have cost, had they gone upstream.
    pub saved_today_usd: f64,
    pub saved_month_usd: f64,
    pub latency_ms: Latency,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn start_of_day(now: DateTime<Utc>) -> NaiveDateTime {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or(now.naive_utc())
}

fn start_of_month(now: DateTime<Utc>) -> NaiveDateTime {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(now.naive_utc(), |t| t.naive_utc())
}

/// The numbers of the last 24 hours (costs: today and this month, UTC) of the proxies `caller`
/// may see.
pub async fn summary(state: &AppState, caller: &Caller) -> Result<Summary, DbError> {
    let only = super::visible_proxy_ids(state, caller);
    let only_in_db = only.clone();
    let now = Utc::now();
    let telemetry = &state.telemetry;
    let day_ago = minute_of(now - Duration::hours(24));
    let memory_from = crate::telemetry::Metrics::memory_window_start(now);
    let (today, month) = (start_of_day(now), start_of_month(now));
    let (stored, stored_today, stored_month) = db::run(&state.db, move |conn| {
        let only = only_in_db.as_deref();
        Ok((
            db::metric_rollups::since(conn, day_ago)?,
            db::metric_rollups::spend_between(conn, today, memory_from.max(today), only)?,
            db::metric_rollups::spend_between(conn, month, memory_from.max(month), only)?,
        ))
    })
    .await?;
    let only = only.as_deref();
    let day: Rollup = telemetry.metrics.total_with(&stored, memory_from, only);
    let spend_since = |from: NaiveDateTime, stored: Spend| -> Spend {
        telemetry
            .metrics
            .minutes_since(from.max(memory_from), only)
            .values()
            .fold(stored, |spend, minute| Spend {
                cost_usd: spend.cost_usd + minute.cost_usd,
                saved_usd: spend.saved_usd + minute.saved_usd,
            })
    };
    let (spent_today, spent_month) = (
        spend_since(today, stored_today),
        spend_since(month, stored_month),
    );
    let recent: u64 = telemetry
        .metrics
        .minutes_since(minute_of(now - Duration::minutes(RPM_MINUTES - 1)), only)
        .values()
        .map(|r| r.requests)
        .sum();
    let proxies = state.registry.list_for(caller.access());
    let running = proxies.iter().filter(|p| p.status.is_active()).count();
    Ok(Summary {
        proxies: ProxyCounts {
            total: proxies.len(),
            running,
            stopped: proxies.len() - running,
        },
        requests_total: day.requests,
        requests_per_minute: recent as f64 / RPM_MINUTES as f64,
        cache_hits_total: day.cache_hits,
        cache_hit_rate: ratio(day.cache_hits, day.requests),
        error_rate: ratio(day.errors, day.requests),
        injected_failures_total: day.injected,
        upstream_failures_total: day.upstream_failures,
        in_flight: proxies.iter().map(|p| p.in_flight).sum(),
        input_tokens_total: day.input_tokens,
        output_tokens_total: day.output_tokens,
        cost_today_usd: spent_today.cost_usd,
        cost_month_usd: spent_month.cost_usd,
        saved_today_usd: spent_today.saved_usd,
        saved_month_usd: spent_month.saved_usd,
        latency_ms: Latency {
            p50: latency_estimate(&day, 0.5),
            p95: latency_estimate(&day, 0.95),
            p99: latency_estimate(&day, 0.99),
        },
    })
}

/// A quantile estimated from the histogram, to the microsecond: more digits would be noise.
fn latency_estimate(rollup: &Rollup, quantile: f64) -> Option<f64> {
    rollup
        .latency_quantile(quantile)
        .map(|ms| (ms * 1000.0).round() / 1000.0)
}

pub async fn api_metrics(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(summary(&state, &caller).await?))
}

/// A member's scrape shows their own proxies only.
pub async fn prometheus(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let telemetry = &state.telemetry;
    let in_flight = state
        .registry
        .list_for(caller.access())
        .iter()
        .map(|p| p.in_flight)
        .sum();
    let only = super::visible_proxy_ids(&state, &caller);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            telemetry
                .metrics
                .prometheus(in_flight, telemetry.dropped(), only.as_deref()),
        )
}
