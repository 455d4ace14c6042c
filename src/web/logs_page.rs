//! The Logs page: a filtered, paginated table of request logs, live rows over SSE, export links
//! and a purge form. Filters are the `/api/logs` ones ([`LogQuery`]), so the page, the live
//! stream and the export links always agree on what matches.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::{ApiError, PageError};
use super::events::sse_message;
use super::format;
use super::logs_api::LogQuery;
use super::pages::{PageResult, html, is_htmx};
use crate::auth::Caller;
use crate::db::models::{LogRow, NewLogRow};
use crate::db::request_logs::{self, LogFilter};
use crate::db::{self};

const PAGE_SIZE: i64 = 50;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The failure kinds a log entry can carry, for the filter's options.
const FAILURE_KINDS: [&str; 7] = [
    "ip_blocked",
    "rate_limited",
    "timeout",
    "error_injection",
    "upstream_error",
    "proxy_error",
    "spend_cap",
];

/// Query strings as `application/x-www-form-urlencoded` writes them (space as `%20` is fine).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A time typed into a `datetime-local` field (no zone: taken as UTC), a bare date, or RFC 3339.
fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.naive_utc())
}

/// Filters, page and live switch as the page's links and form carry them. Every field is text,
/// so an empty `<select>` value never fails to parse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogsParams {
    pub proxy_id: String,
    pub status: String,
    pub cache: String,
    pub failure: String,
    pub since: String,
    pub until: String,
    pub q: String,
    pub offset: String,
    pub live: String,
}

impl LogsParams {
    fn offset(&self) -> i64 {
        self.offset.trim().parse().unwrap_or(0).max(0)
    }

    /// Live unless switched off with `live=0`.
    fn live(&self) -> bool {
        self.live.trim() != "0"
    }

    fn is_filtered(&self) -> bool {
        [
            &self.proxy_id,
            &self.status,
            &self.cache,
            &self.failure,
            &self.since,
            &self.until,
            &self.q,
        ]
        .iter()
        .any(|v| !v.trim().is_empty())
    }

    fn time(field: &str, text: &str) -> Result<String, String> {
        match text.trim() {
            "" => Ok(String::new()),
            text => parse_time(text)
                .map(|t| t.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true))
                .ok_or_else(|| format!("“{text}” is not a date and time ({field}).")),
        }
    }

    /// The filters in the `/api/logs` shape: ids as numbers, times as RFC 3339 UTC.
    fn api_pairs(&self) -> Result<Vec<(&'static str, String)>, String> {
        let proxy = self.proxy_id.trim();
        if !proxy.is_empty() && proxy.parse::<i32>().is_err() {
            return Err(format!("“{proxy}” is not a proxy id."));
        }
        Ok(vec![
            ("proxy_id", proxy.to_owned()),
            ("status", self.status.trim().to_lowercase()),
            ("cache", self.cache.trim().to_owned()),
            ("failure", self.failure.trim().to_owned()),
            ("since", Self::time("since", &self.since)?),
            ("until", Self::time("until", &self.until)?),
            ("q", self.q.trim().to_owned()),
        ])
    }

    fn filter(&self) -> Result<LogFilter, String> {
        let pairs = self.api_pairs()?;
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let query = LogQuery {
            proxy_id: get("proxy_id").and_then(|p| p.parse().ok()),
            status: get("status"),
            cache: get("cache"),
            failure: get("failure"),
            since: get("since"),
            until: get("until"),
            q: get("q"),
            ..LogQuery::default()
        };
        query.filter().map_err(|e| match e {
            ApiError::Invalid(field) => field.message,
            other => other.to_string(),
        })
    }

    /// The filters as the page's own links carry them (times as typed into the form).
    fn page_pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("proxy_id", self.proxy_id.trim()),
            ("status", self.status.trim()),
            ("cache", self.cache.trim()),
            ("failure", self.failure.trim()),
            ("since", self.since.trim()),
            ("until", self.until.trim()),
            ("q", self.q.trim()),
        ]
    }

    /// A `datetime-local` field's value for a filter time, whichever form it came in.
    fn input_time(text: &str) -> String {
        match parse_time(text) {
            Some(time) => time.format("%Y-%m-%dT%H:%M:%S").to_string(),
            None => text.trim().to_owned(),
        }
    }

    pub fn since_input(&self) -> String {
        Self::input_time(&self.since)
    }

    pub fn until_input(&self) -> String {
        Self::input_time(&self.until)
    }
}

/// One log entry as the table shows it.
pub struct LogLine {
    pub id: Option<i32>,
    pub datetime: String,
    pub time_text: String,
    pub proxy_id: i32,
    pub proxy_name: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub client_ip: String,
    pub status: i32,
    pub latency: String,
    pub cache: String,
    pub failure: Option<String>,
    pub stream: bool,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost: Option<String>,
    pub error_message: Option<String>,
}

macro_rules! log_line {
    ($row:expr, $id:expr) => {{
        let row = $row;
        LogLine {
            id: $id,
            datetime: row
                .timestamp
                .and_utc()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            time_text: format::utc_time(row.timestamp),
            proxy_id: row.proxy_id,
            proxy_name: row.proxy_name.as_str().to_owned(),
            method: row.method.as_str().to_owned(),
            path: row.path.as_str().to_owned(),
            model: row.model.as_deref().map(str::to_owned),
            client_ip: row.client_ip.as_str().to_owned(),
            status: row.status,
            latency: format::latency(row.latency_ms),
            cache: row.cache.as_str().to_owned(),
            failure: row.failure.as_deref().map(str::to_owned),
            stream: row.stream,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost: row.cost_usd.map(format::usd),
            error_message: row.error_message.as_deref().map(str::to_owned),
        }
    }};
}

impl From<&LogRow> for LogLine {
    fn from(row: &LogRow) -> Self {
        log_line!(row, Some(row.id))
    }
}

impl From<&NewLogRow> for LogLine {
    fn from(row: &NewLogRow) -> Self {
        log_line!(row, None)
    }
}

impl LogLine {
    /// `2xx`, `4xx`…; `0xx` when no answer went out.
    pub fn status_class(&self) -> String {
        format!("{}xx", self.status.clamp(0, 999) / 100)
    }

    pub fn tokens_text(&self) -> String {
        format::tokens(self.input_tokens, self.output_tokens)
    }
}

/// What the results part of the page shows.
pub struct LogsView {
    pub params: LogsParams,
    pub rows: Vec<LogLine>,
    pub total: i64,
    pub offset: i64,
    /// The live stream is on for this render (live requested, newest page, valid filters).
    pub live: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl LogsView {
    fn url(&self, offset: i64, live: bool) -> String {
        let offset = offset.to_string();
        let mut pairs = self.params.page_pairs();
        if offset != "0" {
            pairs.push(("offset", &offset));
        }
        if !live {
            pairs.push(("live", "0"));
        }
        match query_string(&pairs) {
            q if q.is_empty() => "/logs".to_owned(),
            q => format!("/logs?{q}"),
        }
    }

    pub fn live_requested(&self) -> bool {
        self.params.live()
    }

    pub fn filtered(&self) -> bool {
        self.params.is_filtered()
    }

    pub fn newer_url(&self) -> Option<String> {
        (self.offset > 0).then(|| self.url((self.offset - PAGE_SIZE).max(0), self.params.live()))
    }

    pub fn older_url(&self) -> Option<String> {
        (self.offset + PAGE_SIZE < self.total)
            .then(|| self.url(self.offset + PAGE_SIZE, self.params.live()))
    }

    pub fn newest_url(&self) -> String {
        self.url(0, self.params.live())
    }

    pub fn pause_url(&self) -> String {
        self.url(self.offset, false)
    }

    pub fn resume_url(&self) -> String {
        self.url(0, true)
    }

    fn api_query(&self) -> String {
        let pairs = self.params.api_pairs().unwrap_or_default();
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        query_string(&borrowed)
    }

    pub fn events_url(&self) -> String {
        match self.api_query() {
            q if q.is_empty() => "/logs/events".to_owned(),
            q => format!("/logs/events?{q}"),
        }
    }

    pub fn export_url(&self, format: &str) -> String {
        match self.api_query() {
            q if q.is_empty() => format!("/api/logs/export?format={format}"),
            q => format!("/api/logs/export?format={format}&{q}"),
        }
    }

    /// "1–50" for the rows shown.
    pub fn range(&self) -> String {
        if self.rows.is_empty() {
            return "0".to_owned();
        }
        format!(
            "{}–{}",
            self.offset + 1,
            self.offset + self.rows.len() as i64
        )
    }
}

pub struct ProxyOption {
    pub id: i32,
    pub name: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "logs/index.html")]
pub struct LogsPage {
    pub view: LogsView,
    pub proxies: Vec<ProxyOption>,
    pub failure_kinds: [&'static str; 7],
    /// The purge form is shown unfolded (after a purge error).
    pub purge_open: bool,
}

impl LogsPage {
    pub fn cache_is(&self, value: &str) -> bool {
        self.view.params.cache.trim() == value
    }

    pub fn failure_is(&self, value: &str) -> bool {
        self.view.params.failure.trim() == value
    }
}

#[derive(Template)]
#[template(path = "logs/_results.html")]
pub struct LogsResults {
    pub view: LogsView,
}

#[derive(Template)]
#[template(path = "logs/_row.html")]
pub struct LogRowFragment {
    pub row: LogLine,
}

fn proxy_options(state: &AppState, caller: &Caller, selected: &str) -> Vec<ProxyOption> {
    let selected = selected.trim();
    let live = state
        .registry
        .list_for(caller.access())
        .into_iter()
        .map(|snapshot| (snapshot.spec.id.0, snapshot.spec.name.clone()));
    // Their logs are kept, so they can still be chosen.
    let deleted = state
        .registry
        .deleted_for(caller.access())
        .into_iter()
        .map(|proxy| (proxy.id.0, format!("{} (deleted)", proxy.name)));
    let mut proxies: Vec<ProxyOption> = live
        .chain(deleted)
        .map(|(id, name)| ProxyOption {
            id,
            selected: id.to_string() == selected,
            name,
        })
        .collect();
    proxies.sort_by_key(|p| p.id);
    // A proxy deleted before deleted proxies were remembered is known by its id alone.
    if let Ok(id) = selected.parse::<i32>()
        && !proxies.iter().any(|p| p.id == id)
    {
        proxies.push(ProxyOption {
            id,
            name: format!("Proxy #{id} (deleted)"),
            selected: true,
        });
    }
    proxies
}

async fn load(
    state: &AppState,
    caller: &Caller,
    params: LogsParams,
) -> Result<LogsView, PageError> {
    let visible_proxies = super::visible_proxy_ids(state, caller);
    let offset = params.offset();
    let mut view = LogsView {
        live: params.live() && offset == 0,
        params,
        rows: Vec::new(),
        total: 0,
        offset,
        notice: None,
        error: None,
    };
    match view.params.filter() {
        Ok(mut filter) => {
            filter.visible_proxies = visible_proxies;
            let (rows, total) = db::run(&state.db, move |conn| {
                request_logs::page(conn, &filter, PAGE_SIZE, offset)
            })
            .await?;
            view.rows = rows.iter().map(LogLine::from).collect();
            view.total = total;
        }
        Err(error) => {
            view.live = false;
            view.error = Some(error);
        }
    }
    Ok(view)
}

/// The results alone for HTMX; the whole page otherwise.
fn respond(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    view: LogsView,
    purge_open: bool,
) -> PageResult {
    let failed = view.error.is_some();
    if is_htmx(req) {
        // htmx swaps only 2xx answers by default, so a rejected filter goes out as 200.
        return html(req, StatusCode::OK, &LogsResults { view });
    }
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = LogsPage {
        proxies: proxy_options(state, caller, &view.params.proxy_id),
        view,
        failure_kinds: FAILURE_KINDS,
        purge_open,
    };
    html(req, status, &page)
}

pub async fn logs(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Query<LogsParams>,
) -> PageResult {
    let view = load(&state, &caller, params.into_inner()).await?;
    respond(&req, &state, &caller, view, false)
}

#[derive(Debug, Deserialize)]
pub struct PurgeForm {
    #[serde(default)]
    purge_since: String,
    #[serde(default)]
    purge_before: String,
    #[serde(default)]
    purge_proxy_id: String,
    /// The no-script confirmation checkbox; HTMX asks with `hx-confirm` instead.
    confirm: Option<String>,
    #[serde(flatten)]
    params: LogsParams,
}

pub async fn purge(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<PurgeForm>,
) -> PageResult {
    let form = form.into_inner();
    let checked: Result<(Option<NaiveDateTime>, NaiveDateTime, Option<i32>), String> = (|| {
        if form.confirm.is_none() && !is_htmx(&req) {
            return Err(
                "Nothing was deleted: tick “I understand this deletes logs” to confirm.".to_owned(),
            );
        }
        let before = parse_time(&form.purge_before).ok_or_else(|| {
            if form.purge_before.trim().is_empty() {
                "Nothing was deleted: choose the date to delete entries before.".to_owned()
            } else {
                format!("“{}” is not a date and time.", form.purge_before.trim())
            }
        })?;
        let since = match form.purge_since.trim() {
            "" => None,
            text => {
                Some(parse_time(text).ok_or_else(|| format!("“{text}” is not a date and time."))?)
            }
        };
        if since.is_some_and(|since| since >= before) {
            return Err(
                "Nothing was deleted: the start of the range must come before its end.".to_owned(),
            );
        }
        let proxy = match form.purge_proxy_id.trim() {
            "" => None,
            id => Some(
                id.parse::<i32>()
                    .map_err(|_| format!("“{id}” is not a proxy id."))?,
            ),
        };
        Ok((since, before, proxy))
    })();
    let (notice, error) = match checked {
        Ok((since, before, proxy)) => {
            let visible = super::visible_proxy_ids(&state, &caller);
            let deleted = db::run(&state.db, move |conn| {
                request_logs::purge(conn, since, before, proxy, visible)
            })
            .await?;
            let noun = if deleted == 1 { "entry" } else { "entries" };
            (Some(format!("Deleted {deleted} {noun}.")), None)
        }
        Err(error) => (None, Some(error)),
    };
    let mut view = load(&state, &caller, form.params).await?;
    view.notice = notice;
    if error.is_some() {
        view.error = error;
    }
    let open = view.error.is_some();
    respond(&req, &state, &caller, view, open)
}

/// `/logs/purge` opened in a browser: the form lives on the Logs page.
pub async fn purge_page() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, "/logs"))
        .finish()
}

fn render_row(row: &NewLogRow) -> Option<Bytes> {
    match (LogRowFragment {
        row: LogLine::from(row),
    })
    .render()
    {
        Ok(html) => Some(sse_message("log", &html)),
        Err(e) => {
            log::error!("cannot render a live log row: {e}");
            None
        }
    }
}

/// New log entries that match the page's filters, as rendered table rows (`event: log`).
pub async fn log_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Query<LogsParams>,
) -> PageResult {
    let mut filter = params.filter().map_err(PageError::BadRequest)?;
    filter.visible_proxies = super::visible_proxy_ids(&state, &caller);
    let receiver = state.telemetry.subscribe();
    let shutting_down = state.shutting_down.clone();
    let signed_out = super::events::signed_out(&req, &state);
    // A comment first, so clients see the stream open at once.
    let hello = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(Bytes::from_static(b": live logs\n\n"))
    });
    let rows = futures_util::stream::unfold(
        (filter, receiver, shutting_down, signed_out),
        |(filter, mut receiver, mut shutting_down, mut signed_out)| async move {
            let keep_alive = tokio::time::sleep(KEEP_ALIVE);
            tokio::pin!(keep_alive);
            let chunk = loop {
                if *shutting_down.borrow() {
                    return None;
                }
                tokio::select! {
                    _ = shutting_down.changed() => return None,
                    _ = &mut signed_out => return None,
                    () = &mut keep_alive => break Bytes::from_static(b": keep-alive\n\n"),
                    received = receiver.recv() => match received {
                        Ok(row) if filter.matches(&row) => {
                            if let Some(chunk) = render_row(&row) {
                                break chunk;
                            }
                        }
                        Ok(_) => {}
                        // Missed entries show up on the next reload; keep going.
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                }
            };
            Some((
                Ok::<_, actix_web::Error>(chunk),
                (filter, receiver, shutting_down, signed_out),
            ))
        },
    );
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(hello.chain(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: i32, cache: &str, failure: Option<&str>) -> NewLogRow {
        NewLogRow {
            timestamp: parse_time("2026-01-02T03:04:05").expect("time"),
            proxy_id: 1,
            proxy_name: "p".into(),
            provider: "openai".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: Some("gpt-4o".into()),
            client_ip: "127.0.0.1".into(),
            status,
            latency_ms: 1.5,
            upstream_latency_ms: None,
            cache: cache.into(),
            failure: failure.map(Into::into),
            stream: false,
            request_bytes: 0,
            response_bytes: 0,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            prompt_hash: None,
            user_agent: None,
            error_message: None,
            scenario: None,
        }
    }

    fn matches(filter: &LogFilter, row: &NewLogRow) -> bool {
        filter.matches(row)
    }

    fn filter(query: &str) -> LogFilter {
        let params: LogsParams = serde_urlencoded_like(query);
        params.filter().expect("valid filter")
    }

    fn serde_urlencoded_like(query: &str) -> LogsParams {
        web::Query::<LogsParams>::from_query(query)
            .expect("parses")
            .into_inner()
    }

    #[test]
    fn live_rows_are_filtered_like_the_table() {
        let ok = row(200, "hit", None);
        let failed = row(429, "bypass", Some("rate_limited"));
        assert!(matches(&filter(""), &ok));
        assert!(matches(&filter("proxy_id=1&cache=hit&status=2xx"), &ok));
        assert!(!matches(&filter("proxy_id=2"), &ok));
        assert!(!matches(&filter("status=4xx"), &ok));
        assert!(matches(&filter("status=429"), &failed));
        assert!(matches(&filter("failure=any"), &failed));
        assert!(!matches(&filter("failure=any"), &ok));
        assert!(matches(&filter("failure=rate_limited"), &failed));
        assert!(matches(&filter("q=GPT"), &ok));
        assert!(!matches(&filter("q=claude"), &ok));
        assert!(matches(&filter("since=2026-01-02T03:00"), &ok));
        assert!(!matches(&filter("until=2026-01-02T03:00"), &ok));
        assert!(matches(&filter("proxy_id=&status=&cache="), &ok), "blanks");
    }

    #[test]
    fn form_times_are_utc_and_links_carry_rfc3339() {
        let params = serde_urlencoded_like("since=2026-01-02T03:04&q=a b&cache=hit");
        let view = LogsView {
            params,
            rows: Vec::new(),
            total: 0,
            offset: 0,
            live: true,
            notice: None,
            error: None,
        };
        assert_eq!(
            view.export_url("csv"),
            "/api/logs/export?format=csv&cache=hit&since=2026-01-02T03%3A04%3A00Z&q=a%20b"
        );
        assert_eq!(
            view.pause_url(),
            "/logs?cache=hit&since=2026-01-02T03%3A04&q=a%20b&live=0"
        );
        assert_eq!(view.params.since_input(), "2026-01-02T03:04:00");
        assert!(serde_urlencoded_like("status=abc").filter().is_err());
        assert!(serde_urlencoded_like("since=yesterday").filter().is_err());
    }
}
