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

/// Cost in `[from, until)` of the proxies in `only` (all when `None`), summed in SQL (a month of
/// minutes need not be loaded).
pub fn cost_between(
    conn: &mut SqliteConnection,
    from: NaiveDateTime,
    until: NaiveDateTime,
    only: Option<&[i32]>,
) -> Result<f64, DbError> {
    let mut query = dsl::metric_rollups
        .filter(dsl::minute.ge(from).and(dsl::minute.lt(until)))
        .select(diesel::dsl::sum(dsl::cost_usd))
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(dsl::proxy_id.eq_any(ids.to_vec()));
    }
    let total: Option<f64> = query.first(conn)?;
    Ok(total.unwrap_or(0.0))
}
