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
