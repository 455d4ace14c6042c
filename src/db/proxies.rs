//! Queries on the `proxies` table.

use diesel::prelude::*;

use super::DbError;
use super::models::{DeletedProxyRow, NewProxyRow, ProxyRow, ProxySettingsChange};
use super::schema::deleted_proxies;
use super::schema::proxies::dsl;

pub fn all(conn: &mut SqliteConnection) -> Result<Vec<ProxyRow>, DbError> {
    Ok(dsl::proxies
        .select(ProxyRow::as_select())
        .order(dsl::id.asc())
        .load(conn)?)
}

pub fn insert(conn: &mut SqliteConnection, row: &NewProxyRow) -> Result<ProxyRow, DbError> {
    Ok(diesel::insert_into(dsl::proxies)
        .values(row)
        .returning(ProxyRow::as_returning())
        .get_result(conn)?)
}

pub fn update_settings(
    conn: &mut SqliteConnection,
    id: i32,
    change: &ProxySettingsChange,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set(change)
        .execute(conn)?;
    Ok(())
}

pub fn set_runtime_state(
    conn: &mut SqliteConnection,
    id: i32,
    desired_state: &str,
    last_error: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set((
            dsl::desired_state.eq(desired_state),
            dsl::last_error.eq(last_error),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes the proxy and remembers it as `deleted`, in one transaction.
pub fn delete(conn: &mut SqliteConnection, deleted: &DeletedProxyRow) -> Result<(), DbError> {
    conn.immediate_transaction(|conn| {
        diesel::insert_into(deleted_proxies::table)
            .values(deleted)
            .execute(conn)?;
        diesel::delete(dsl::proxies.find(deleted.id)).execute(conn)?;
        Ok(())
    })
}

pub fn all_deleted(conn: &mut SqliteConnection) -> Result<Vec<DeletedProxyRow>, DbError> {
    Ok(deleted_proxies::table
        .select(DeletedProxyRow::as_select())
        .order(deleted_proxies::id.asc())
        .load(conn)?)
}

pub fn set_failure_config(
    conn: &mut SqliteConnection,
    id: i32,
    failure_config: &str,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set(dsl::failure_config.eq(failure_config))
        .execute(conn)?;
    Ok(())
}
