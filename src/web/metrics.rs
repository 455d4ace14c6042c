//! `GET /api/metrics` (dashboard numbers as JSON) and `GET /metrics` (Prometheus).

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::db::DbError;
use crate::telemetry::Rollup;

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

/// Writes lost on the way to the database since start, of one kind and for one reason.
#[derive(Debug, Serialize)]
pub struct DroppedWrites {
    pub what: &'static str,
    pub why: &'static str,
    pub count: u64,
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
    /// Server-wide, since start: log entries, cache entries and roll-ups that were not saved.
    pub dropped_writes_total: u64,
    /// The non-zero counts behind `dropped_writes_total`.
    pub dropped_writes: Vec<DroppedWrites>,
}

impl Summary {
    /// The dropped writes in words, for the dashboard's tooltip.
    pub fn dropped_detail(&self) -> String {
        self.dropped_writes
            .iter()
            .map(|d| format!("{} {} ({})", d.count, d.what, d.why))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The numbers of the last 24 hours (costs: today and this month, UTC) of the proxies `caller`
/// may see.
pub async fn summary(state: &AppState, caller: &Caller) -> Result<Summary, DbError> {
    let only = super::visible_proxy_ids(state, caller);
    let now = Utc::now();
    let metrics = &state.telemetry.metrics;
    let usage = metrics.usage(&state.db, now, only.clone()).await?;
    let day = &usage.day;
    let requests_per_minute = metrics.requests_per_minute(now, only.as_deref());
    let proxies = state.registry.list_for(caller.access());
    let running = proxies.iter().filter(|p| p.status.is_active()).count();
    let dropped_writes: Vec<DroppedWrites> = state
        .telemetry
        .drops()
        .all()
        .into_iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(what, why, count)| DroppedWrites {
            what: what.as_str(),
            why: why.as_str(),
            count,
        })
        .collect();
    Ok(Summary {
        proxies: ProxyCounts {
            total: proxies.len(),
            running,
            stopped: proxies.len() - running,
        },
        requests_total: day.requests,
        requests_per_minute,
        cache_hits_total: day.cache_hits,
        cache_hit_rate: day.cache_hit_rate(),
        error_rate: day.error_rate(),
        injected_failures_total: day.injected,
        upstream_failures_total: day.upstream_failures,
        in_flight: proxies.iter().map(|p| p.in_flight).sum(),
        input_tokens_total: day.input_tokens,
        output_tokens_total: day.output_tokens,
        cost_today_usd: usage.today.cost_usd,
        cost_month_usd: usage.month.cost_usd,
        saved_today_usd: usage.today.saved_usd,
        saved_month_usd: usage.month.saved_usd,
        latency_ms: Latency {
            p50: latency_estimate(day, 0.5),
            p95: latency_estimate(day, 0.95),
            p99: latency_estimate(day, 0.99),
        },
        dropped_writes_total: dropped_writes.iter().map(|d| d.count).sum(),
        dropped_writes,
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
                .prometheus(in_flight, telemetry.drops(), only.as_deref()),
        )
}
