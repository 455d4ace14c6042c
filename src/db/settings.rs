//! The `settings` table: one JSON value per key.

use diesel::prelude::*;

use super::DbError;
use super::schema::settings;

pub fn all(conn: &mut SqliteConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(settings::table
        .select((settings::key, settings::value))
        .load(conn)?)
}

pub fn save(conn: &mut SqliteConnection, values: &[(String, String)]) -> Result<(), DbError> {
    conn.transaction(|conn| {
        for (key, value) in values {
            diesel::replace_into(settings::table)
                .values((settings::key.eq(key), settings::value.eq(value)))
                .execute(conn)?;
        }
        Ok(())
    })
}
