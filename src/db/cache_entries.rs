//! Queries on the `cache_entries` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::DbError;
use super::models::CacheEntryRow;
use super::schema::cache_entries::dsl;

pub fn find(
    conn: &mut SqliteConnection,
    proxy_id: i32,
    key: &str,
) -> Result<Option<CacheEntryRow>, DbError> {
    Ok(dsl::cache_entries
        .filter(dsl::proxy_id.eq(proxy_id).and(dsl::cache_key.eq(key)))
        .select(CacheEntryRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts or replaces the entry for the row's key (two identical misses both store).
pub fn upsert(conn: &mut SqliteConnection, row: &CacheEntryRow) -> Result<(), DbError> {
    diesel::insert_into(dsl::cache_entries)
        .values(row)
        .on_conflict((dsl::proxy_id, dsl::cache_key))
        .do_update()
        .set((
            dsl::status.eq(excluded(dsl::status)),
            dsl::headers.eq(excluded(dsl::headers)),
            dsl::body.eq(excluded(dsl::body)),
            dsl::chunks.eq(excluded(dsl::chunks)),
            dsl::size_bytes.eq(excluded(dsl::size_bytes)),
            dsl::created_at.eq(excluded(dsl::created_at)),
            dsl::last_used_at.eq(excluded(dsl::last_used_at)),
            dsl::recording.eq(excluded(dsl::recording)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn exists(conn: &mut SqliteConnection, proxy_id: i32, key: &str) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        dsl::cache_entries.filter(dsl::proxy_id.eq(proxy_id).and(dsl::cache_key.eq(key))),
    ))
    .get_result(conn)?)
}

/// Which of these keys a proxy has stored.
pub fn stored_keys(
    conn: &mut SqliteConnection,
    proxy_id: i32,
    keys: &[String],
) -> Result<Vec<String>, DbError> {
    let mut found = Vec::new();
    for some in keys.chunks(500) {
        found.extend(
            dsl::cache_entries
                .filter(dsl::proxy_id.eq(proxy_id).and(dsl::cache_key.eq_any(some)))
                .select(dsl::cache_key)
                .load::<String>(conn)?,
        );
    }
    Ok(found)
}

/// Every entry of a proxy, oldest first.
pub fn all_for_proxy(
    conn: &mut SqliteConnection,
    proxy_id: i32,
) -> Result<Vec<CacheEntryRow>, DbError> {
    Ok(dsl::cache_entries
        .filter(dsl::proxy_id.eq(proxy_id))
        .order((dsl::created_at.asc(), dsl::id.asc()))
        .select(CacheEntryRow::as_select())
        .load(conn)?)
}

/// A recorded request an entry answers, for finding the one nearest to a miss.
#[derive(Debug, QueryableByName)]
pub struct RecordedEntry {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub cache_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub recording: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub created_at: NaiveDateTime,
}

/// The recordings of a proxy's entries for this method, path, model and cassette (bodies of
/// answers are not read).
pub fn recordings_like(
    conn: &mut SqliteConnection,
    proxy_id: i32,
    method: &str,
    path: &str,
    model: Option<&str>,
    cassette: Option<&str>,
) -> Result<Vec<RecordedEntry>, DbError> {
    use diesel::sql_types::{Integer, Nullable, Text};
    Ok(diesel::sql_query(
        "SELECT cache_key, recording, created_at FROM cache_entries \
         WHERE proxy_id = ? AND recording IS NOT NULL \
         AND json_extract(recording, '$.request.method') = ? \
         AND json_extract(recording, '$.request.path') = ? \
         AND json_extract(recording, '$.model') IS ? \
         AND json_extract(recording, '$.cassette') IS ?",
    )
    .bind::<Integer, _>(proxy_id)
    .bind::<Text, _>(method)
    .bind::<Text, _>(path)
    .bind::<Nullable<Text>, _>(model)
    .bind::<Nullable<Text>, _>(cassette)
    .load(conn)?)
}

pub fn record_hits(
    conn: &mut SqliteConnection,
    proxy_id: i32,
    key: &str,
    count: i64,
    at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(
        dsl::cache_entries.filter(dsl::proxy_id.eq(proxy_id).and(dsl::cache_key.eq(key))),
    )
    .set((
        dsl::hit_count.eq(dsl::hit_count + count),
        dsl::last_hit_at.eq(at),
        dsl::last_used_at.eq(at),
    ))
    .execute(conn)?;
    Ok(())
}

/// Deletes one entry; returns whether there was one.
pub fn delete_one(conn: &mut SqliteConnection, proxy_id: i32, key: &str) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        dsl::cache_entries.filter(dsl::proxy_id.eq(proxy_id).and(dsl::cache_key.eq(key))),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// One entry as a list shows it: what it answers and its numbers, never its body.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = super::schema::cache_entries)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct EntrySummary {
    pub id: i32,
    pub cache_key: String,
    pub size_bytes: i64,
    pub hit_count: i64,
    pub created_at: NaiveDateTime,
    pub last_hit_at: Option<NaiveDateTime>,
    /// `cache::Recording` as JSON; `None` for entries stored before fixtures.
    pub recording: Option<String>,
    /// Whether the answer is a stream (replayed chunk by chunk).
    #[diesel(select_expression = dsl::chunks.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<dsl::chunks>)]
    pub stream: bool,
}

/// The `LIKE` pattern that finds `text` anywhere, its own `%`, `_` and `\` taken literally.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

type Filtered<'a> = super::schema::cache_entries::BoxedQuery<'a, diesel::sqlite::Sqlite>;

/// One proxy's entries, those whose recorded request (model, prompt, path…) contains `search`
/// when given (case-insensitively for ASCII, as SQLite's `LIKE` is).
fn filtered(proxy_id: i32, search: Option<&str>) -> Filtered<'static> {
    let query = dsl::cache_entries
        .filter(dsl::proxy_id.eq(proxy_id))
        .into_boxed();
    match search.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => query.filter(dsl::recording.like(contains_pattern(text)).escape('\\')),
        None => query,
    }
}

/// A page of one proxy's entries, newest first, with how many match in all.
pub fn page_for_proxy(
    conn: &mut SqliteConnection,
    proxy_id: i32,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<EntrySummary>, u64), DbError> {
    let entries = filtered(proxy_id, search)
        .order((dsl::created_at.desc(), dsl::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(EntrySummary::as_select())
        .load(conn)?;
    let total: i64 = filtered(proxy_id, search).count().get_result(conn)?;
    Ok((entries, total.unsigned_abs()))
}

pub fn delete_for_proxy(conn: &mut SqliteConnection, proxy_id: i32) -> Result<usize, DbError> {
    Ok(diesel::delete(dsl::cache_entries.filter(dsl::proxy_id.eq(proxy_id))).execute(conn)?)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredStats {
    pub entries: u64,
    pub bytes: u64,
    pub oldest: Option<NaiveDateTime>,
    pub newest: Option<NaiveDateTime>,
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    bytes: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    oldest: Option<NaiveDateTime>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    newest: Option<NaiveDateTime>,
}

pub fn stats(conn: &mut SqliteConnection, proxy_id: i32) -> Result<StoredStats, DbError> {
    let row: StatsRow = diesel::sql_query(
        "SELECT COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS bytes, \
         MIN(created_at) AS oldest, MAX(created_at) AS newest \
         FROM cache_entries WHERE proxy_id = ?",
    )
    .bind::<diesel::sql_types::Integer, _>(proxy_id)
    .get_result(conn)?;
    Ok(StoredStats {
        entries: row.entries.unsigned_abs(),
        bytes: row.bytes.unsigned_abs(),
        oldest: row.oldest,
        newest: row.newest,
    })
}

#[derive(QueryableByName)]
struct TotalsRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    proxy_id: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    bytes: i64,
}

/// Entry count and bytes of every proxy, for the cards.
pub fn totals_by_proxy(conn: &mut SqliteConnection) -> Result<Vec<(i32, u64, u64)>, DbError> {
    let rows: Vec<TotalsRow> = diesel::sql_query(
        "SELECT proxy_id, COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS bytes \
         FROM cache_entries GROUP BY proxy_id",
    )
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.proxy_id, r.entries.unsigned_abs(), r.bytes.unsigned_abs()))
        .collect())
}

/// Entry count and bytes of one proxy, read from the `cache_entries_lru` index alone.
pub fn usage(conn: &mut SqliteConnection, proxy_id: i32) -> Result<(u64, u64), DbError> {
    #[derive(QueryableByName)]
    struct UsageRow {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        entries: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    // No proxy_id column: a proxy without entries gets one row with a NULL there.
    let row: UsageRow = diesel::sql_query(
        "SELECT COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS bytes \
         FROM cache_entries INDEXED BY cache_entries_lru WHERE proxy_id = ?",
    )
    .bind::<diesel::sql_types::Integer, _>(proxy_id)
    .get_result(conn)?;
    Ok((row.entries.unsigned_abs(), row.bytes.unsigned_abs()))
}

/// An entry as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LruEntry {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub id: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub proxy_id: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub size_bytes: i64,
}

/// Up to `limit` entries, least recently used (stored or hit) first: of one proxy, or of all.
pub fn least_recently_used(
    conn: &mut SqliteConnection,
    proxy_id: Option<i32>,
    limit: i64,
) -> Result<Vec<LruEntry>, DbError> {
    let rows = match proxy_id {
        Some(proxy_id) => diesel::sql_query(
            "SELECT id, proxy_id, size_bytes FROM cache_entries INDEXED BY cache_entries_lru \
             WHERE proxy_id = ? ORDER BY last_used_at, id LIMIT ?",
        )
        .bind::<diesel::sql_types::Integer, _>(proxy_id)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)?,
        None => diesel::sql_query(
            "SELECT id, proxy_id, size_bytes FROM cache_entries INDEXED BY cache_entries_lru \
             ORDER BY last_used_at, id LIMIT ?",
        )
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)?,
    };
    Ok(rows)
}

/// Deletes the entries with these ids; returns the proxy and key of each one deleted.
pub fn delete_ids(conn: &mut SqliteConnection, ids: &[i32]) -> Result<Vec<(i32, String)>, DbError> {
    Ok(
        diesel::delete(dsl::cache_entries.filter(dsl::id.eq_any(ids)))
            .returning((dsl::proxy_id, dsl::cache_key))
            .get_results(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;

    use super::*;
    use crate::db::old_schema::{migrated_before, revert_through};

    fn entry(proxy_id: i32, key: &str, recording: Option<&str>, at: &str) -> CacheEntryRow {
        let at = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").expect("time");
        CacheEntryRow {
            proxy_id,
            cache_key: key.to_owned(),
            status: 200,
            headers: "[]".into(),
            body: b"{}".to_vec(),
            chunks: (key == "s").then(|| "[2]".to_owned()),
            size_bytes: 2,
            created_at: at,
            last_used_at: at,
            recording: recording.map(str::to_owned),
        }
    }

    #[test]
    fn a_page_of_entries_is_newest_first_searched_in_the_recording_and_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        // Entries of proxies this test does not make.
        conn.batch_execute("PRAGMA foreign_keys = OFF;")
            .expect("pragma");
        for row in [
            entry(
                1,
                "a",
                Some(r#"{"model":"gpt-4o","prompt":"50% off"}"#),
                "2026-12-01 10:00:00",
            ),
            entry(
                1,
                "s",
                Some(r#"{"model":"claude","prompt":"Say_hi"}"#),
                "2026-12-02 10:00:00",
            ),
            entry(1, "old", None, "2026-11-01 10:00:00"),
            entry(
                2,
                "other",
                Some(r#"{"model":"gpt-4o"}"#),
                "2026-12-03 10:00:00",
            ),
        ] {
            upsert(&mut conn, &row).expect("stored");
        }
        let keys = |(entries, total): (Vec<EntrySummary>, u64)| {
            let keys: Vec<String> = entries.into_iter().map(|e| e.cache_key).collect();
            (keys, total)
        };
        let page = |conn: &mut SqliteConnection, search, limit, offset| {
            keys(page_for_proxy(conn, 1, search, limit, offset).expect("page"))
        };
        assert_eq!(
            page(&mut conn, None, 10, 0),
            (vec!["s".into(), "a".into(), "old".into()], 3)
        );
        assert_eq!(page(&mut conn, None, 1, 1), (vec!["a".into()], 3));
        assert_eq!(
            page(&mut conn, Some("GPT-4O"), 10, 0),
            (vec!["a".into()], 1)
        );
        assert_eq!(
            page(&mut conn, Some("%"), 10, 0),
            (vec!["a".into()], 1),
            "a literal %"
        );
        assert_eq!(
            page(&mut conn, Some("y_h"), 10, 0),
            (vec!["s".into()], 1),
            "a literal _"
        );
        assert_eq!(page(&mut conn, Some("x_y"), 10, 0), (vec![], 0));
        assert_eq!(
            page(&mut conn, Some("  "), 10, 0).1,
            3,
            "blank is no search"
        );
        let (entries, _) = page_for_proxy(&mut conn, 1, None, 10, 0).expect("page");
        assert!(entries[0].stream && !entries[1].stream);
        assert!(delete_one(&mut conn, 1, "a").expect("deleted"));
        assert!(!delete_one(&mut conn, 1, "a").expect("gone already"));
    }

    #[test]
    fn old_entries_are_ordered_by_last_hit_else_creation_and_the_change_reverts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated_before(&dir, "2026-11-25-000001");
        conn.batch_execute(
            "PRAGMA foreign_keys = OFF; \
             INSERT INTO cache_entries (id, proxy_id, cache_key, status, headers, body, size_bytes, \
             created_at, last_hit_at) VALUES \
             (1, 7, 'a', 200, '[]', x'00', 10, '2026-11-01 10:00:00', '2026-11-03 10:00:00'), \
             (2, 7, 'b', 200, '[]', x'00', 20, '2026-11-02 10:00:00', NULL), \
             (3, 8, 'c', 200, '[]', x'00', 30, '2026-11-01 09:00:00', NULL);",
        )
        .expect("entries from before the budgets");
        conn.run_pending_migrations(crate::db::MIGRATIONS)
            .expect("the remaining migrations");

        let order = |conn: &mut SqliteConnection, proxy| -> Vec<i32> {
            least_recently_used(conn, proxy, 10)
                .expect("candidates")
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(order(&mut conn, None), [3, 2, 1], "hit last, so used last");
        assert_eq!(order(&mut conn, Some(7)), [2, 1]);
        assert_eq!(usage(&mut conn, 7).expect("usage"), (2, 30));
        assert_eq!(usage(&mut conn, 9).expect("usage"), (0, 0), "no entries");

        let hit = NaiveDateTime::parse_from_str("2026-11-04 10:00:00", "%Y-%m-%d %H:%M:%S")
            .expect("time");
        record_hits(&mut conn, 8, "c", 1, hit).expect("a hit");
        assert_eq!(order(&mut conn, None), [2, 1, 3]);
        let mut deleted = delete_ids(&mut conn, &[2, 1]).expect("deleted");
        deleted.sort();
        assert_eq!(deleted, vec![(7, "a".to_owned()), (7, "b".to_owned())]);
        assert_eq!(usage(&mut conn, 7).expect("usage"), (0, 0));

        revert_through(&mut conn, "2026-11-25-000001");
        let columns: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT COUNT(*) FROM pragma_table_info('cache_entries') WHERE name = 'last_used_at')",
        ))
        .get_result(&mut conn)
        .expect("columns");
        assert_eq!(columns, 0, "the column is gone");
    }
}
