//! Queries on `users`, `sessions` and `api_tokens`. Secrets arrive here already hashed.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbError;
use super::models::{ApiTokenRow, NewApiTokenRow, NewSessionRow, NewUserRow, SessionRow, UserRow};
use super::schema::{api_tokens, proxies, sessions, users};

pub fn user_count(conn: &mut SqliteConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn users(conn: &mut SqliteConnection) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table
        .select(UserRow::as_select())
        .order(users::id.asc())
        .load(conn)?)
}

pub fn user(conn: &mut SqliteConnection, id: i32) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Emails compare without case (the column is `COLLATE NOCASE`).
pub fn user_by_email(conn: &mut SqliteConnection, email: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// The admin created at first start: the oldest admin.
pub fn first_admin(conn: &mut SqliteConnection) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::role.eq("admin"))
        .order(users::id.asc())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_user(conn: &mut SqliteConnection, row: &NewUserRow) -> Result<UserRow, DbError> {
    Ok(diesel::insert_into(users::table)
        .values(row)
        .returning(UserRow::as_returning())
        .get_result(conn)?)
}

/// Sets a new password and ends every session of the user (a reset must lock out whoever had
/// the old one).
pub fn set_password(
    conn: &mut SqliteConnection,
    user_id: i32,
    password_hash: &str,
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::update(users::table.find(user_id))
            .set(users::password_hash.eq(password_hash))
            .execute(conn)?;
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
        Ok(())
    })
}

pub fn insert_session(conn: &mut SqliteConnection, row: &NewSessionRow) -> Result<(), DbError> {
    diesel::insert_into(sessions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn session(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<SessionRow>, DbError> {
    Ok(sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn touch_session(
    conn: &mut SqliteConnection,
    id: i32,
    at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(sessions::table.find(id))
        .set(sessions::last_seen_at.eq(at))
        .execute(conn)?;
    Ok(())
}

pub fn delete_session(conn: &mut SqliteConnection, token_hash: &str) -> Result<(), DbError> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash))).execute(conn)?;
    Ok(())
}

pub fn delete_idle_sessions(
    conn: &mut SqliteConnection,
    seen_before: NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(
        diesel::delete(sessions::table.filter(sessions::last_seen_at.lt(seen_before)))
            .execute(conn)?,
    )
}

pub fn insert_token(conn: &mut SqliteConnection, row: &NewApiTokenRow) -> Result<(), DbError> {
    diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn token(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<ApiTokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::token_hash.eq(token_hash))
        .select(ApiTokenRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn tokens_of(conn: &mut SqliteConnection, user_id: i32) -> Result<Vec<ApiTokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .order(api_tokens::id.desc())
        .select(ApiTokenRow::as_select())
        .load(conn)?)
}

pub fn touch_token(conn: &mut SqliteConnection, id: i32, at: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(api_tokens::table.find(id))
        .set(api_tokens::last_used_at.eq(at))
        .execute(conn)?;
    Ok(())
}

/// Revokes a token of `user_id`; false when it has no such token.
pub fn delete_token(conn: &mut SqliteConnection, user_id: i32, id: i32) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        api_tokens::table
            .filter(api_tokens::id.eq(id))
            .filter(api_tokens::user_id.eq(user_id)),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// Replaces the user's tokens named `name` (the bootstrap token follows its environment
/// variable from start to start).
pub fn replace_named_token(
    conn: &mut SqliteConnection,
    row: &NewApiTokenRow,
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::delete(
            api_tokens::table
                .filter(api_tokens::user_id.eq(row.user_id))
                .filter(api_tokens::name.eq(row.name)),
        )
        .execute(conn)?;
        diesel::insert_into(api_tokens::table)
            .values(row)
            .execute(conn)?;
        Ok(())
    })
}

/// Gives proxies from before accounts existed to `owner`.
pub fn adopt_ownerless_proxies(conn: &mut SqliteConnection, owner: i32) -> Result<usize, DbError> {
    Ok(
        diesel::update(proxies::table.filter(proxies::owner_id.is_null()))
            .set(proxies::owner_id.eq(owner))
            .execute(conn)?,
    )
}
