//! Queries on `request_logs`.

use std::borrow::Borrow;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;

use super::DbError;
use super::models::{LogRow, NewLogRow, UnixMicros};
use super::schema::request_logs::dsl;

/// Rows per INSERT statement: one statement prepared once and reused for every full chunk.
pub const ROWS_PER_INSERT: usize = 16;

/// Writes log rows: chunks of [`ROWS_PER_INSERT`] rows per statement, then the rest one by one.
pub fn insert<R: Borrow<NewLogRow>>(
    conn: &mut SqliteConnection,
    rows: &[R],
) -> Result<(), DbError> {
    let (chunks, rest) = rows.as_chunks::<ROWS_PER_INSERT>();
    for chunk in chunks {
        LogInsert::new(chunk.each_ref().map(Borrow::borrow)).execute(conn)?;
    }
    for row in rest {
        LogInsert::new([row.borrow()]).execute(conn)?;
    }
    Ok(())
}

/// `INSERT INTO request_logs … VALUES (…), …` for `N` rows, built by hand because the writer runs
/// it for every proxied request: Diesel's generic batch insert spent more instructions than
/// SQLite did, walking every value again to decide whether the statement may be cached and to
/// look for DEFAULTs. This one binds each value once and is always safe to cache.
struct LogInsert<'a, const N: usize> {
    rows: [&'a NewLogRow; N],
    times: [UnixMicros; N],
}

impl<'a, const N: usize> LogInsert<'a, N> {
    fn new(rows: [&'a NewLogRow; N]) -> Self {
        LogInsert {
            rows,
            times: rows.each_ref().map(|row| UnixMicros::from(row.timestamp)),
        }
    }
}

impl<const N: usize> QueryId for LogInsert<'_, N> {
    type QueryId = LogInsert<'static, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const N: usize> QueryFragment<Sqlite> for LogInsert<'_, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO request_logs (timestamp, proxy_id, proxy_name, provider, method, path, \
             model, client_ip, status, latency_ms, upstream_latency_ms, cache, failure, stream, \
             request_bytes, response_bytes, input_tokens, output_tokens, cost_usd, prompt_hash, \
             user_agent, error_message, scenario) VALUES ",
        );
        for (index, (row, time)) in self.rows.iter().zip(&self.times).enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(time)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&row.proxy_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.proxy_name)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.provider)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.method)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.path)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.model)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.client_ip)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&row.status)?;
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&row.latency_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&row.upstream_latency_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.cache)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.failure)?;
            out.push_sql(", ");
            out.push_bind_param::<Bool, _>(&row.stream)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.request_bytes)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.response_bytes)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.input_tokens)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.output_tokens)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Double>, _>(&row.cost_usd)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.prompt_hash)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.user_agent)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.error_message)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.scenario)?;
            out.push_sql(")");
        }
        Ok(())
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Sqlite) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<const N: usize> RunQueryDsl<SqliteConnection> for LogInsert<'_, N> {}

/// Which log entries a listing, export or purge covers.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub proxy_id: Option<i32>,
    /// Only these proxies' entries (a member's own proxies); `None` for all.
    pub visible_proxies: Option<Vec<i32>>,
    /// An exact code (`429`) or a class (`4xx`).
    pub status: Option<String>,
    pub cache: Option<String>,
    /// A failure kind, or `any` for every failed request.
    pub failure: Option<String>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    /// Free text over path, model and client IP.
    pub q: Option<String>,
}

type Boxed<'a> = super::schema::request_logs::BoxedQuery<'a, Sqlite>;

fn filtered(filter: &LogFilter) -> Boxed<'static> {
    let mut query = dsl::request_logs.into_boxed();
    if let Some(proxy) = filter.proxy_id {
        query = query.filter(dsl::proxy_id.eq(proxy));
    }
    if let Some(visible) = filter.visible_proxies.clone() {
        query = query.filter(dsl::proxy_id.eq_any(visible));
    }
    if let Some(status) = filter.status.as_deref() {
        if let Some(class) = status
            .strip_suffix("xx")
            .and_then(|c| c.parse::<i32>().ok())
        {
            query = query.filter(dsl::status.between(class * 100, class * 100 + 99));
        } else if let Ok(code) = status.parse::<i32>() {
            query = query.filter(dsl::status.eq(code));
        }
    }
    if let Some(cache) = filter.cache.clone() {
        query = query.filter(dsl::cache.eq(cache));
    }
    match filter.failure.as_deref() {
        None => {}
        Some("any") => query = query.filter(dsl::failure.is_not_null()),
        Some("none") => query = query.filter(dsl::failure.is_null()),
        Some(kind) => query = query.filter(dsl::failure.eq(kind.to_owned())),
    }
    if let Some(since) = filter.since {
        query = query.filter(dsl::timestamp.ge(UnixMicros::from(since)));
    }
    if let Some(until) = filter.until {
        query = query.filter(dsl::timestamp.lt(UnixMicros::from(until)));
    }
    if let Some(text) = filter.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = format!(
            "%{}%",
            text.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        query = query.filter(
            dsl::path
                .like(pattern.clone())
                .escape('\\')
                .or(dsl::model.like(pattern.clone()).escape('\\'))
                .or(dsl::client_ip.like(pattern).escape('\\')),
        );
    }
    query
}

impl LogFilter {
    /// Whether a fresh entry, not yet stored, belongs in a listing of this filter: [`filtered`]
    /// in memory, for live rows. One difference stays: `q` ignores case here for every letter,
    /// SQLite's `LIKE` for ASCII letters only.
    pub fn matches(&self, row: &NewLogRow) -> bool {
        if self.proxy_id.is_some_and(|id| id != row.proxy_id) {
            return false;
        }
        if self
            .visible_proxies
            .as_ref()
            .is_some_and(|ids| !ids.contains(&row.proxy_id))
        {
            return false;
        }
        if let Some(status) = self.status.as_deref() {
            let class = status
                .strip_suffix("xx")
                .and_then(|c| c.parse::<i32>().ok());
            let ok = match (class, status.parse::<i32>()) {
                (Some(class), _) => (class * 100..class * 100 + 100).contains(&row.status),
                (None, Ok(code)) => row.status == code,
                (None, Err(_)) => true,
            };
            if !ok {
                return false;
            }
        }
        if self.cache.as_deref().is_some_and(|c| c != row.cache) {
            return false;
        }
        let failure_ok = match self.failure.as_deref() {
            None => true,
            Some("any") => row.failure.is_some(),
            Some("none") => row.failure.is_none(),
            Some(kind) => row.failure.as_deref() == Some(kind),
        };
        if !failure_ok
            || self.since.is_some_and(|t| row.timestamp < t)
            || self.until.is_some_and(|t| row.timestamp >= t)
        {
            return false;
        }
        match self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            None => true,
            Some(q) => {
                let q = q.to_lowercase();
                [
                    Some(row.path.as_str()),
                    row.model.as_deref(),
                    Some(&row.client_ip),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(&q))
            }
        }
    }
}

/// Newest first.
pub fn page(
    conn: &mut SqliteConnection,
    filter: &LogFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<LogRow>, i64), DbError> {
    let total = filtered(filter).count().get_result(conn)?;
    let rows = filtered(filter)
        .select(LogRow::as_select())
        .order(dsl::id.desc())
        .limit(limit)
        .offset(offset)
        .load(conn)?;
    Ok((rows, total))
}

/// Oldest first, after `after_id`: pages of an export.
pub fn after(
    conn: &mut SqliteConnection,
    filter: &LogFilter,
    after_id: i32,
    limit: i64,
) -> Result<Vec<LogRow>, DbError> {
    Ok(filtered(filter)
        .filter(dsl::id.gt(after_id))
        .select(LogRow::as_select())
        .order(dsl::id.asc())
        .limit(limit)
        .load(conn)?)
}

/// Deletes entries older than `before`, of one proxy or of every visible one.
/// Deletes entries logged in `[since, before)` (`since` `None`: everything before `before`).
pub fn purge(
    conn: &mut SqliteConnection,
    since: Option<NaiveDateTime>,
    before: NaiveDateTime,
    proxy_id: Option<i32>,
    visible_proxies: Option<Vec<i32>>,
) -> Result<usize, DbError> {
    let mut query =
        diesel::delete(dsl::request_logs.filter(dsl::timestamp.lt(UnixMicros::from(before))))
            .into_boxed();
    if let Some(since) = since {
        query = query.filter(dsl::timestamp.ge(UnixMicros::from(since)));
    }
    if let Some(proxy) = proxy_id {
        query = query.filter(dsl::proxy_id.eq(proxy));
    }
    if let Some(visible) = visible_proxies {
        query = query.filter(dsl::proxy_id.eq_any(visible));
    }
    Ok(query.execute(conn)?)
}

/// The daily retention purge: entries older than `retention_days` before `now` go; 0 keeps all.
pub fn purge_expired(
    conn: &mut SqliteConnection,
    retention_days: u32,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let before = (now - TimeDelta::days(retention_days.into())).naive_utc();
    purge(conn, None, before, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field distinct from the others of its type, so that a value bound to the wrong
    /// column shows.
    fn full_row(n: u16) -> NewLogRow {
        let n32 = i32::from(n);
        let n64 = i64::from(n);
        let nf = f64::from(n);
        NewLogRow {
            timestamp: DateTime::from_timestamp_micros(1_780_000_000_123_456 + n64)
                .expect("time")
                .naive_utc(),
            proxy_id: n32,
            proxy_name: compact_str::format_compact!("name {n}"),
            provider: "anthropic".into(),
            method: "POST".into(),
            path: compact_str::format_compact!("/v1/messages/{n}"),
            model: Some(compact_str::format_compact!("claude {n}")),
            client_ip: "203.0.113.7".into(),
            status: 400 + n32,
            latency_ms: 1.5 + nf,
            upstream_latency_ms: Some(0.25 + nf),
            cache: "miss".into(),
            failure: Some("upstream_error".into()),
            stream: n % 2 == 1,
            request_bytes: 1000 + n64,
            response_bytes: 2000 + n64,
            input_tokens: Some(3000 + n64),
            output_tokens: Some(4000 + n64),
            cost_usd: Some(0.125 + nf),
            prompt_hash: Some(compact_str::format_compact!("hash {n}")),
            user_agent: Some(compact_str::format_compact!("agent {n}")),
            error_message: Some(compact_str::format_compact!("error {n}")),
            scenario: Some(compact_str::format_compact!("test {n}")),
        }
    }

    #[test]
    fn every_field_lands_in_its_column_in_chunks_and_singly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        let count = u16::try_from(ROWS_PER_INSERT + 3).expect("small");
        let rows: Vec<NewLogRow> = (0..count).map(full_row).collect();
        insert(&mut conn, &rows).expect("inserted");
        let stored: Vec<LogRow> = dsl::request_logs
            .select(LogRow::as_select())
            .order(dsl::id.asc())
            .load(&mut conn)
            .expect("rows");
        assert_eq!(stored.len(), rows.len());
        for (row, got) in rows.iter().zip(&stored) {
            let expected = serde_json::to_value(row).expect("json");
            let actual = serde_json::to_value(NewLogRow {
                timestamp: got.timestamp,
                proxy_id: got.proxy_id,
                proxy_name: got.proxy_name.as_str().into(),
                provider: got.provider.as_str().into(),
                method: got.method.as_str().into(),
                path: got.path.as_str().into(),
                model: got.model.as_deref().map(Into::into),
                client_ip: got.client_ip.as_str().into(),
                status: got.status,
                latency_ms: got.latency_ms,
                upstream_latency_ms: got.upstream_latency_ms,
                cache: got.cache.as_str().into(),
                failure: got.failure.as_deref().map(Into::into),
                stream: got.stream,
                request_bytes: got.request_bytes,
                response_bytes: got.response_bytes,
                input_tokens: got.input_tokens,
                output_tokens: got.output_tokens,
                cost_usd: got.cost_usd,
                prompt_hash: got.prompt_hash.as_deref().map(Into::into),
                user_agent: got.user_agent.as_deref().map(Into::into),
                error_message: got.error_message.as_deref().map(Into::into),
                scenario: got.scenario.as_deref().map(Into::into),
            })
            .expect("json");
            assert_eq!(actual, expected);
        }
    }

    #[test]
    fn live_rows_match_as_the_query_selects() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        let at = |minute: u32| {
            NaiveDateTime::parse_from_str(&format!("2026-01-02 03:{minute:02}:00"), "%F %T")
                .expect("time")
        };
        let rows: Vec<NewLogRow> = [
            (1, 200, "hit", None, Some("gpt-4o"), 0),
            (1, 429, "bypass", Some("rate_limited"), None, 1),
            (2, 503, "miss", Some("upstream_error"), Some("Claude_3%"), 2),
            (3, 299, "miss", None, Some("gpt-4o-mini"), 3),
            (3, 300, "miss", Some("timeout"), None, 4),
        ]
        .into_iter()
        .enumerate()
        .map(
            |(n, (proxy_id, status, cache, failure, model, minute))| NewLogRow {
                timestamp: at(minute),
                proxy_id,
                status,
                cache: cache.into(),
                failure: failure.map(Into::into),
                model: model.map(Into::into),
                path: compact_str::format_compact!("/v1/{n}"),
                client_ip: "10.0.0.7".into(),
                ..NewLogRow::default()
            },
        )
        .collect();
        insert(&mut conn, &rows).expect("inserted");
        let text = |value: &str| Some(value.to_owned());
        let filters = [
            LogFilter::default(),
            LogFilter {
                proxy_id: Some(1),
                ..LogFilter::default()
            },
            LogFilter {
                visible_proxies: Some(vec![2, 3]),
                ..LogFilter::default()
            },
            LogFilter {
                visible_proxies: Some(Vec::new()),
                ..LogFilter::default()
            },
            LogFilter {
                status: text("2xx"),
                ..LogFilter::default()
            },
            LogFilter {
                status: text("3xx"),
                ..LogFilter::default()
            },
            LogFilter {
                status: text("429"),
                ..LogFilter::default()
            },
            LogFilter {
                status: text("abc"),
                ..LogFilter::default()
            },
            LogFilter {
                cache: text("miss"),
                ..LogFilter::default()
            },
            LogFilter {
                failure: text("any"),
                ..LogFilter::default()
            },
            LogFilter {
                failure: text("none"),
                ..LogFilter::default()
            },
            LogFilter {
                failure: text("timeout"),
                ..LogFilter::default()
            },
            LogFilter {
                since: Some(at(1)),
                until: Some(at(3)),
                ..LogFilter::default()
            },
            LogFilter {
                q: text(" GPT "),
                ..LogFilter::default()
            },
            LogFilter {
                q: text("3%"),
                ..LogFilter::default()
            },
            LogFilter {
                q: text("e_3"),
                ..LogFilter::default()
            },
            LogFilter {
                q: text("/v1/4"),
                ..LogFilter::default()
            },
            LogFilter {
                q: text("10.0.0"),
                ..LogFilter::default()
            },
            LogFilter {
                q: text("   "),
                ..LogFilter::default()
            },
        ];
        for filter in filters {
            let mut selected: Vec<String> = page(&mut conn, &filter, 100, 0)
                .expect("page")
                .0
                .into_iter()
                .map(|row| row.path)
                .collect();
            selected.sort();
            let matched: Vec<String> = rows
                .iter()
                .filter(|row| filter.matches(row))
                .map(|row| row.path.to_string())
                .collect();
            assert_eq!(matched, selected, "{filter:?}");
        }
    }

    #[test]
    fn retention_keeps_what_is_younger_than_the_setting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        let now = Utc::now();
        for days_old in [40, 31, 29, 1] {
            let row = NewLogRow {
                timestamp: (now - TimeDelta::days(days_old)).naive_utc(),
                path: compact_str::format_compact!("/{days_old}"),
                cache: "miss".into(),
                ..NewLogRow::default()
            };
            insert(&mut conn, &[row]).expect("inserted");
        }
        assert_eq!(
            purge_expired(&mut conn, 0, now).expect("purge"),
            0,
            "0 keeps all"
        );
        assert_eq!(purge_expired(&mut conn, 30, now).expect("purge"), 2);
        let left: Vec<String> = dsl::request_logs
            .select(dsl::path)
            .order(dsl::id.asc())
            .load(&mut conn)
            .expect("rows");
        assert_eq!(left, ["/29", "/1"]);
    }

    #[test]
    fn entries_logged_before_integer_times_keep_their_times() {
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;

        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = crate::db::old_schema::migrated_before(&dir, "2026-11-24-100004");
        conn.batch_execute(
            "INSERT INTO request_logs (timestamp, proxy_id, proxy_name, provider, method, path, \
             client_ip, status, latency_ms, cache, stream, request_bytes, response_bytes) \
             VALUES ('2026-03-04 05:06:07.891234', 1, 'p', 'openai', 'POST', '/v1/x', \
             '127.0.0.1', 200, 1.5, 'miss', 0, 10, 20);",
        )
        .expect("an entry in the old format");
        conn.run_pending_migrations(crate::db::MIGRATIONS)
            .expect("the remaining migrations");

        let rows: Vec<LogRow> = dsl::request_logs
            .select(LogRow::as_select())
            .load(&mut conn)
            .expect("rows");
        assert_eq!(rows.len(), 1);
        let expected =
            NaiveDateTime::parse_from_str("2026-03-04 05:06:07.891", "%F %T%.f").expect("time");
        assert_eq!(rows[0].timestamp, expected, "kept to the millisecond");
        let since = expected - TimeDelta::seconds(1);
        let filter = LogFilter {
            since: Some(since),
            until: Some(expected + TimeDelta::seconds(1)),
            ..LogFilter::default()
        };
        assert_eq!(page(&mut conn, &filter, 10, 0).expect("page").1, 1);
        let later = LogFilter {
            since: Some(expected + TimeDelta::milliseconds(1)),
            ..LogFilter::default()
        };
        assert_eq!(page(&mut conn, &later, 10, 0).expect("page").1, 0);

        crate::db::old_schema::revert_through(&mut conn, "2026-11-24-100004");
        #[derive(QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            timestamp: String,
        }
        let undone: Vec<Text> = diesel::sql_query("SELECT timestamp FROM request_logs")
            .load(&mut conn)
            .expect("rows");
        assert_eq!(undone.len(), 1);
        assert_eq!(undone[0].timestamp, "2026-03-04 05:06:07.891");
    }
}
