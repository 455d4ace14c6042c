//! Queries on `metric_rollups`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbError;
use super::models::RollupRow;
use super::schema::metric_rollups::dsl;

/// Writes a minute's totals (the telemetry keeps the running totals; this replaces the row).
pub fn upsert(conn: &mut SqliteConnection, row: &RollupRow) -> Result<(), DbError> {
    diesel::insert_into(dsl::metric_rollups)
        .values(row)
        .on_conflict((dsl::proxy_id, dsl::minute))
        .do_update()
        .set(row)
        .execute(conn)?;
    Ok(())
}

pub fn since(conn: &mut SqliteConnection, from: NaiveDateTime) -> Result<Vec<RollupRow>, DbError> {
    Ok(dsl::metric_rollups
        .filter(dsl::minute.ge(from))
        .select(RollupRow::as_select())
        .order(dsl::minute.asc())
        .load(conn)?)
}

/// Roll-ups are read for the last 24 hours and the current month only; this many days of them
/// are kept at least, so "this month" and last month stay whole whatever the log retention.
const KEPT_DAYS_AT_LEAST: u32 = 62;

/// The daily purge, beside the request log's: roll-ups older than the log retention (but at
/// least [`KEPT_DAYS_AT_LEAST`] days) go; a retention of 0 keeps everything, as for the log.
pub fn purge_expired(
    conn: &mut SqliteConnection,
    retention_days: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, DbError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let kept = chrono::TimeDelta::days(retention_days.max(KEPT_DAYS_AT_LEAST).into());
    let before = (now - kept).naive_utc();
    Ok(diesel::delete(dsl::metric_rollups.filter(dsl::minute.lt(before))).execute(conn)?)
}

/// Money in USD: what requests cost, and what cache hits saved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub cost_usd: f64,
    pub saved_usd: f64,
}

/// Spend in `[from, until)` of the proxies in `only` (all when `None`), summed in SQL (a month of
/// minutes need not be loaded).
pub fn spend_between(
    conn: &mut SqliteConnection,
    from: NaiveDateTime,
    until: NaiveDateTime,
    only: Option<&[i32]>,
) -> Result<Spend, DbError> {
    let mut query = dsl::metric_rollups
        .filter(dsl::minute.ge(from).and(dsl::minute.lt(until)))
        .select((
            diesel::dsl::sum(dsl::cost_usd),
            diesel::dsl::sum(dsl::saved_usd),
        ))
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(dsl::proxy_id.eq_any(ids.to_vec()));
    }
    let (cost, saved): (Option<f64>, Option<f64>) = query.first(conn)?;
    Ok(Spend {
        cost_usd: cost.unwrap_or(0.0),
        saved_usd: saved.unwrap_or(0.0),
    })
}

/// What each proxy's requests cost from `from` on (hits cost nothing), by proxy id: the live
/// spend of the day so far, read at start for the daily spend caps.
pub fn cost_by_proxy_since(
    conn: &mut SqliteConnection,
    from: NaiveDateTime,
) -> Result<Vec<(i32, f64)>, DbError> {
    let sums: Vec<(i32, Option<f64>)> = dsl::metric_rollups
        .filter(dsl::minute.ge(from))
        .group_by(dsl::proxy_id)
        .select((dsl::proxy_id, diesel::dsl::sum(dsl::cost_usd)))
        .load(conn)?;
    Ok(sums
        .into_iter()
        .map(|(proxy, cost)| (proxy, cost.unwrap_or(0.0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;

    use super::*;
    use crate::db::old_schema::{migrated_before, revert_through};
    use crate::telemetry::Rollup;

    #[test]
    fn roll_ups_outlive_the_log_retention_by_two_months_at_least() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        let now = chrono::Utc::now();
        for days_old in [1, 40, 70, 200] {
            let row = RollupRow {
                proxy_id: 1,
                minute: (now - chrono::TimeDelta::days(days_old)).naive_utc(),
                latency_histogram: "[]".to_owned(),
                ..RollupRow::default()
            };
            upsert(&mut conn, &row).expect("roll-up");
        }
        let left = |conn: &mut SqliteConnection| -> i64 {
            dsl::metric_rollups.count().get_result(conn).expect("count")
        };
        assert_eq!(
            purge_expired(&mut conn, 0, now).expect("purge"),
            0,
            "0 keeps all"
        );
        assert_eq!(
            purge_expired(&mut conn, 7, now).expect("purge"),
            2,
            "kept 62 days"
        );
        assert_eq!(left(&mut conn), 2);
        assert_eq!(purge_expired(&mut conn, 30, now).expect("purge"), 0);
        assert_eq!(left(&mut conn), 2);
    }

    #[test]
    fn the_days_cost_is_summed_per_proxy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(dir.path()).expect("database");
        let mut conn = pool.get().expect("connection");
        let midnight = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a time");
        for (proxy_id, minutes_after_midnight, cost_usd) in
            [(1, -1, 100.0), (1, 0, 0.25), (1, 600, 0.5), (2, 1, 0.125)]
        {
            let row = RollupRow {
                proxy_id,
                minute: midnight + chrono::TimeDelta::minutes(minutes_after_midnight),
                cost_usd,
                saved_usd: 7.0,
                latency_histogram: "[]".to_owned(),
                ..RollupRow::default()
            };
            upsert(&mut conn, &row).expect("roll-up");
        }
        let mut spent = cost_by_proxy_since(&mut conn, midnight).expect("sums");
        spent.sort_by_key(|(proxy, _)| *proxy);
        assert_eq!(
            spent,
            vec![(1, 0.75), (2, 0.125)],
            "the day before and savings do not count"
        );
    }

    #[test]
    fn histograms_rolled_up_before_the_finer_buckets_keep_their_counts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated_before(&dir, "2026-11-24-100006");
        // The 14 old bounds were 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 and
        // 10000 ms: 3 requests up to 0.5 ms, 4 in (1000, 2500], 1 in (2500, 5000], 2 over 10 s.
        let old = "[3,0,0,0,0,0,0,0,0,0,0,4,1,0,2]";
        conn.batch_execute(&format!(
            "INSERT INTO metric_rollups VALUES (1, '2026-11-24 10:00:00', 10, 0, 3, 0, 0, \
             40000.0, '{old}', 0, 0, 0.0);"
        ))
        .expect("a roll-up in the old format");
        conn.run_pending_migrations(crate::db::MIGRATIONS)
            .expect("the remaining migrations");

        let rows = since(&mut conn, NaiveDateTime::default()).expect("rows");
        let rollup = Rollup::from_row(&rows[0]);
        assert_eq!(rollup.buckets.iter().sum::<u64>(), 10, "no count lost");
        assert_eq!(rollup.buckets[2], 3, "(0.25, 0.5]");
        assert_eq!(rollup.buckets[16], 4, "(2000, 2500]");
        assert_eq!(rollup.buckets[19], 1, "(4000, 5000]");
        assert_eq!(rollup.buckets[22], 2, "(10 s, 15 s]");
        assert_eq!(rollup.latency_quantile(0.5), Some(2250.0));

        revert_through(&mut conn, "2026-11-24-100006");
        #[derive(QueryableByName)]
        struct Histogram {
            #[diesel(sql_type = diesel::sql_types::Text)]
            latency_histogram: String,
        }
        let undone: Vec<Histogram> =
            diesel::sql_query("SELECT latency_histogram FROM metric_rollups")
                .load(&mut conn)
                .expect("rows");
        assert_eq!(undone[0].latency_histogram, old);
    }
}
