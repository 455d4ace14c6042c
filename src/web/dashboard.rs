//! The dashboard: the last 24 hours in numbers, the last hour as a chart, and what is
//! happening now.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use chrono::Utc;

use super::AppState;
use super::cards::ProxyCard;
use super::format;
use super::logs_api::LogEntry;
use super::metrics::{Summary, summary};
use super::pages::{PageResult, html, is_htmx, see_other};
use super::proxy_host::ProxyHost;
use crate::auth::Caller;
use crate::db::{self, DbError};

const CHART_MINUTES: i64 = 60;
const SPARK_MINUTES: i64 = 30;
const RECENT: i64 = 10;
pub const CHART_WIDTH: f64 = 600.0;
pub const CHART_HEIGHT: f64 = 120.0;

pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub label: String,
}

pub struct ProxyActivity {
    pub card: ProxyCard,
    pub rpm: f64,
    /// SVG polyline points of requests per minute over the last half hour.
    pub sparkline: String,
}

pub struct Dashboard {
    pub summary: Summary,
    pub bars: Vec<Bar>,
    pub peak_rpm: u64,
    pub proxies: Vec<ProxyActivity>,
    pub recent: Vec<LogEntry>,
}

impl Dashboard {
    // Templates pass fields by reference.
    pub fn cost(value: &f64) -> String {
        format::cost(*value)
    }

    pub fn percent(value: &f64) -> String {
        format::percent(*value)
    }

    pub fn latency(value: &f64) -> String {
        format::latency(*value)
    }

    pub fn millis(value: &Option<f64>) -> String {
        format::millis(*value)
    }
}

#[derive(Template)]
#[template(path = "dashboard/index.html")]
pub struct DashboardPage {
    pub stats: Dashboard,
}

#[derive(Template)]
#[template(path = "dashboard/_stats.html")]
pub struct DashboardStatsFragment {
    pub stats: Dashboard,
}

async fn build(state: &AppState, host: &ProxyHost, caller: &Caller) -> Result<Dashboard, DbError> {
    let summary = summary(state, caller).await?;
    let only = super::visible_proxy_ids(state, caller);
    let metrics = &state.telemetry.metrics;
    let now = Utc::now();

    let counts = metrics.requests_by_minute(now, CHART_MINUTES, only.as_deref());
    let peak_rpm = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = CHART_WIDTH / CHART_MINUTES as f64;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, (minute, requests))| {
            let height = (*requests as f64 / peak_rpm as f64) * (CHART_HEIGHT - 4.0);
            Bar {
                x: i as f64 * slot + 1.0,
                y: CHART_HEIGHT - height,
                width: slot - 2.0,
                height,
                label: format!("{} UTC: {requests} requests", minute.format("%H:%M")),
            }
        })
        .collect();

    let mut proxies: Vec<ProxyActivity> = state
        .registry
        .list_for(caller.access())
        .iter()
        .map(|snapshot| {
            let id = snapshot.spec.id.0;
            let counts = metrics.requests_by_minute(now, SPARK_MINUTES, Some(&[id]));
            let peak = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
            let sparkline = counts
                .iter()
                .enumerate()
                .map(|(i, (_, n))| {
                    format!(
                        "{:.1},{:.1}",
                        i as f64 * 4.0,
                        20.0 - (*n as f64 / peak) * 18.0
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            ProxyActivity {
                card: ProxyCard::new(snapshot, host),
                rpm: metrics.requests_per_minute(now, Some(&[id])),
                sparkline,
            }
        })
        .collect();
    proxies.sort_by(|a, b| {
        b.card
            .active
            .cmp(&a.card.active)
            .then(b.rpm.total_cmp(&a.rpm))
    });

    let filter = db::request_logs::LogFilter {
        visible_proxies: only,
        ..Default::default()
    };
    let recent = db::run(&state.db, move |conn| {
        db::request_logs::page(conn, &filter, RECENT, 0)
    })
    .await?
    .0
    .into_iter()
    .map(LogEntry::from)
    .collect();

    Ok(Dashboard {
        summary,
        bars,
        peak_rpm,
        proxies,
        recent,
    })
}

pub async fn page(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> PageResult {
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let stats = build(&state, &host, &caller).await?;
    html(&req, StatusCode::OK, &DashboardPage { stats })
}

pub async fn stats_fragment(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> PageResult {
    if !is_htmx(&req) {
        return Ok(see_other("/"));
    }
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let stats = build(&state, &host, &caller).await?;
    html(&req, StatusCode::OK, &DashboardStatsFragment { stats })
}
