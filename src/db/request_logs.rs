//! Queries on `request_logs`.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;

use super::DbError;
use super::models::{LogRow, UnixMicros};
use super::schema::request_logs::dsl;

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
pub fn purge(
    conn: &mut SqliteConnection,
    before: NaiveDateTime,
    proxy_id: Option<i32>,
    visible_proxies: Option<Vec<i32>>,
) -> Result<usize, DbError> {
    let mut query =
        diesel::delete(dsl::request_logs.filter(dsl::timestamp.lt(UnixMicros::from(before))))
            .into_boxed();
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
    purge(conn, before, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::NewLogRow;

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
            diesel::insert_into(dsl::request_logs)
                .values(row)
                .execute(&mut conn)
                .expect("inserted");
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
        use diesel::migration::{MigrationConnection, MigrationSource};
        use diesel_migrations::MigrationHarness;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.sqlite3");
        let mut conn =
            SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("database");
        conn.setup().expect("migrations table");
        let migrations =
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&crate::db::MIGRATIONS)
                .expect("migrations");
        for migration in migrations
            .iter()
            .take_while(|m| m.name().to_string().as_str() < "2026-11-24-100004")
        {
            conn.run_migration(migration).expect("older migration");
        }
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

        conn.revert_last_migration(crate::db::MIGRATIONS)
            .expect("the change can be undone");
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
