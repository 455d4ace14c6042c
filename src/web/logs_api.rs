//! `/api/logs`: listing with filters, streamed exports, purge.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::db::models::LogRow;
use crate::db::request_logs::{self, LogFilter};
use crate::db::{self, DbError};
use crate::validation::FieldError;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;
const EXPORT_PAGE: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    pub proxy_id: Option<i32>,
    pub status: Option<String>,
    pub cache: Option<String>,
    pub failure: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub format: Option<String>,
}

fn time(field: &'static str, text: Option<&str>) -> Result<Option<NaiveDateTime>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.naive_utc()))
            .map_err(|_| {
                ApiError::Invalid(FieldError::new(
                    field,
                    format!("“{text}” is not an RFC 3339 time such as 2026-11-24T08:00:00Z."),
                ))
            }),
    }
}

impl LogQuery {
    /// The filter, narrowed to the proxies `caller` may see.
    fn filter_for(&self, state: &AppState, caller: &Caller) -> Result<LogFilter, ApiError> {
        Ok(LogFilter {
            visible_proxies: super::visible_proxy_ids(state, caller),
            ..self.filter()?
        })
    }

    pub fn filter(&self) -> Result<LogFilter, ApiError> {
        let blank = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        if let Some(cache) = blank(&self.cache)
            && !matches!(cache.as_str(), "hit" | "miss" | "bypass")
        {
            return Err(ApiError::Invalid(FieldError::new(
                "cache",
                "cache is hit, miss or bypass.",
            )));
        }
        if let Some(status) = blank(&self.status) {
            let valid = status.parse::<u16>().is_ok()
                || (status.len() == 3
                    && status.ends_with("xx")
                    && status[..1].parse::<u8>().is_ok());
            if !valid {
                return Err(ApiError::Invalid(FieldError::new(
                    "status",
                    "status is a code such as 429 or a class such as 4xx.",
                )));
            }
        }
        Ok(LogFilter {
            proxy_id: self.proxy_id,
            visible_proxies: None,
            status: blank(&self.status),
            cache: blank(&self.cache),
            failure: blank(&self.failure),
            since: time("since", self.since.as_deref())?,
            until: time("until", self.until.as_deref())?,
            q: blank(&self.q),
        })
    }
}

/// A log entry in the API's shape.
#[derive(Debug, Serialize)]
pub struct LogEntry {
    pub id: i32,
    pub timestamp: String,
    pub proxy_id: i32,
    pub proxy_name: String,
    pub provider: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub client_ip: String,
    pub status: i32,
    pub latency_ms: f64,
    pub upstream_latency_ms: Option<f64>,
    pub cache: String,
    pub failure: Option<String>,
    pub stream: bool,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub prompt_hash: Option<String>,
    pub user_agent: Option<String>,
    pub error_message: Option<String>,
    /// The test id (`X-Rubberduck-Scenario`) the request was scoped to.
    pub scenario: Option<String>,
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

impl From<LogRow> for LogEntry {
    fn from(row: LogRow) -> Self {
        LogEntry {
            id: row.id,
            timestamp: row
                .timestamp
                .and_utc()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            proxy_id: row.proxy_id,
            proxy_name: row.proxy_name,
            provider: row.provider,
            method: row.method,
            path: row.path,
            model: row.model,
            client_ip: row.client_ip,
            status: row.status,
            latency_ms: round(row.latency_ms, 3),
            upstream_latency_ms: row.upstream_latency_ms.map(|l| round(l, 3)),
            cache: row.cache,
            failure: row.failure,
            stream: row.stream,
            request_bytes: row.request_bytes,
            response_bytes: row.response_bytes,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_usd: row.cost_usd,
            prompt_hash: row.prompt_hash,
            user_agent: row.user_agent,
            error_message: row.error_message,
            scenario: row.scenario,
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter_for(&state, &caller)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = query.offset.unwrap_or(0).max(0);
    let (rows, total) = db::run(&state.db, move |conn| {
        request_logs::page(conn, &filter, limit, offset)
    })
    .await?;
    let logs: Vec<LogEntry> = rows.into_iter().map(LogEntry::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "logs": logs, "total": total })))
}

#[derive(Clone, Copy, PartialEq)]
enum ExportFormat {
    Csv,
    Json,
    Jsonl,
}

const CSV_COLUMNS: [&str; 24] = [
    "id",
    "timestamp",
    "proxy_id",
    "proxy_name",
    "provider",
    "method",
    "path",
    "model",
    "client_ip",
    "status",
    "latency_ms",
    "upstream_latency_ms",
    "cache",
    "failure",
    "stream",
    "request_bytes",
    "response_bytes",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "prompt_hash",
    "user_agent",
    "error_message",
    "scenario",
];

fn csv_record(entry: &LogEntry) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    vec![
        entry.id.to_string(),
        entry.timestamp.clone(),
        entry.proxy_id.to_string(),
        entry.proxy_name.clone(),
        entry.provider.clone(),
        entry.method.clone(),
        entry.path.clone(),
        opt(entry.model.clone()),
        entry.client_ip.clone(),
        entry.status.to_string(),
        entry.latency_ms.to_string(),
        opt(entry.upstream_latency_ms.map(|v| v.to_string())),
        entry.cache.clone(),
        opt(entry.failure.clone()),
        entry.stream.to_string(),
        entry.request_bytes.to_string(),
        entry.response_bytes.to_string(),
        opt(entry.input_tokens.map(|v| v.to_string())),
        opt(entry.output_tokens.map(|v| v.to_string())),
        opt(entry.cost_usd.map(|v| v.to_string())),
        opt(entry.prompt_hash.clone()),
        opt(entry.user_agent.clone()),
        opt(entry.error_message.clone()),
        opt(entry.scenario.clone()),
    ]
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return first) is written with a leading apostrophe: logged paths, models and user agents
/// come from clients.
fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_line(fields: &[String]) -> Result<Vec<u8>, DbError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(fields.iter().map(|field| inert(field).into_owned()))
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    writer
        .into_inner()
        .map_err(|e| DbError::Corrupt(e.to_string()))
}

fn render(format: ExportFormat, entries: &[LogEntry], first: bool) -> Result<Vec<u8>, DbError> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match format {
            ExportFormat::Csv => out.extend(csv_line(&csv_record(entry))?),
            ExportFormat::Jsonl => {
                out.extend(serde_json::to_vec(entry).map_err(|e| DbError::Corrupt(e.to_string()))?);
                out.push(b'\n');
            }
            ExportFormat::Json => {
                if !(first && i == 0) {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(entry).map_err(|e| DbError::Corrupt(e.to_string()))?);
            }
        }
    }
    Ok(out)
}

/// Streams the export page by page, so a large export never sits in memory whole.
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter_for(&state, &caller)?;
    let (format, content_type, extension) = match query.format.as_deref().unwrap_or("csv") {
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        "json" => (ExportFormat::Json, "application/json", "json"),
        "jsonl" => (ExportFormat::Jsonl, "application/x-ndjson", "jsonl"),
        other => {
            return Err(ApiError::Invalid(FieldError::new(
                "format",
                format!("“{other}” is not an export format; use csv, json or jsonl."),
            )));
        }
    };
    let header = match format {
        ExportFormat::Csv => csv_line(&CSV_COLUMNS.map(str::to_owned))?,
        ExportFormat::Json => b"[".to_vec(),
        ExportFormat::Jsonl => Vec::new(),
    };
    struct Cursor {
        after: i32,
        first: bool,
        done: bool,
    }
    let pool = state.db.clone();
    let pages = futures_util::stream::unfold(
        Cursor {
            after: 0,
            first: true,
            done: false,
        },
        move |cursor| {
            let pool = pool.clone();
            let filter = filter.clone();
            async move {
                if cursor.done {
                    return None;
                }
                let after = cursor.after;
                let page = db::run(&pool, move |conn| {
                    request_logs::after(conn, &filter, after, EXPORT_PAGE)
                })
                .await;
                let rows = match page {
                    Ok(rows) => rows,
                    Err(e) => {
                        return Some((
                            Err(actix_web::error::ErrorInternalServerError(e)),
                            Cursor {
                                done: true,
                                ..cursor
                            },
                        ));
                    }
                };
                let last = rows.last().map(|r| r.id);
                let full = rows.len() as i64 == EXPORT_PAGE;
                let entries: Vec<LogEntry> = rows.into_iter().map(LogEntry::from).collect();
                let mut chunk = match render(format, &entries, cursor.first) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        return Some((
                            Err(actix_web::error::ErrorInternalServerError(e)),
                            Cursor {
                                done: true,
                                ..cursor
                            },
                        ));
                    }
                };
                if !full && format == ExportFormat::Json {
                    chunk.push(b']');
                }
                let next = Cursor {
                    after: last.unwrap_or(cursor.after),
                    first: cursor.first && entries.is_empty(),
                    done: !full,
                };
                Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), next))
            }
        },
    );
    let body =
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(Bytes::from(header)) })
            .chain(pages);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"rubberduck-logs.{extension}\""),
        ))
        .streaming(body))
}

#[derive(Debug, Deserialize)]
pub struct PurgeQuery {
    since: Option<String>,
    before: Option<String>,
    proxy_id: Option<i32>,
    #[serde(default)]
    confirm: bool,
}

pub async fn purge(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PurgeQuery>,
) -> Result<HttpResponse, ApiError> {
    if !query.confirm {
        return Err(ApiError::Invalid(FieldError::new(
            "confirm",
            "Deleting logs cannot be undone: add confirm=true.",
        )));
    }
    let before = time("before", query.before.as_deref())?.ok_or_else(|| {
        ApiError::Invalid(FieldError::new(
            "before",
            "before (an RFC 3339 time) is required.",
        ))
    })?;
    let since = time("since", query.since.as_deref())?;
    if since.is_some_and(|since| since >= before) {
        return Err(ApiError::Invalid(FieldError::new(
            "since",
            "since must be earlier than before.",
        )));
    }
    let proxy_id = query.proxy_id;
    let visible = super::visible_proxy_ids(&state, &caller);
    let deleted = db::run(&state.db, move |conn| {
        request_logs::purge(conn, since, before, proxy_id, visible)
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": deleted })))
}
