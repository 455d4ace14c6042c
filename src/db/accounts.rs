//! Queries on `users`, `sessions` and `api_tokens`. Secrets arrive here already hashed.
//!
//! A deleted account stays as a tombstone (`deleted_at` set, email renamed, password wiped) so
//! that the proxies and logs it owned keep a valid owner; queries here leave tombstones out
//! unless they say otherwise.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbError;
use super::models::{ApiTokenRow, NewApiTokenRow, NewSessionRow, NewUserRow, SessionRow, UserRow};
use super::schema::{api_tokens, proxies, sessions, users};

pub fn user_count(conn: &mut SqliteConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

/// Every account but the deleted ones.
pub fn users(conn: &mut SqliteConnection) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .order(users::id.asc())
        .load(conn)?)
}

/// An account that is not deleted (it may be disabled).
pub fn user(conn: &mut SqliteConnection, id: i32) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// An account that may act: neither disabled nor deleted.
pub fn active_user(conn: &mut SqliteConnection, id: i32) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

fn active_admin_count(conn: &mut SqliteConnection) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::role.eq("admin"))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Emails compare without case (the column is `COLLATE NOCASE`). Tombstones carry a renamed
/// email, so a deleted account is never found here.
pub fn user_by_email(conn: &mut SqliteConnection, email: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// The admin created at first start: the oldest admin still active.
pub fn first_admin(conn: &mut SqliteConnection) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::role.eq("admin"))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
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

/// What a new password ends besides the old password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// Every session and every API token of the user (a reset, or "sign out everywhere").
    EndEverything,
    /// Every session but the one with this id (if any); API tokens stay.
    KeepSession(Option<i32>),
}

/// Sets a new password and ends what `ends` says: a reset must lock out whoever had the old one.
pub fn set_password(
    conn: &mut SqliteConnection,
    user_id: i32,
    password_hash: &str,
    ends: PasswordChange,
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::update(users::table.find(user_id))
            .set(users::password_hash.eq(password_hash))
            .execute(conn)?;
        match ends {
            PasswordChange::EndEverything => end_access(conn, user_id)?,
            PasswordChange::KeepSession(keep) => {
                let others = sessions::table
                    .filter(sessions::user_id.eq(user_id))
                    .filter(sessions::id.ne(keep.unwrap_or(0)));
                // Session ids start at 1 (AUTOINCREMENT): without one to keep, 0 keeps none.
                diesel::delete(others).execute(conn)?;
            }
        }
        Ok(())
    })
}

/// Ends every session and revokes every API token of the user.
fn end_access(conn: &mut SqliteConnection, user_id: i32) -> Result<(), DbError> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    diesel::delete(api_tokens::table.filter(api_tokens::user_id.eq(user_id))).execute(conn)?;
    Ok(())
}

/// How taking an account's access away went.
#[derive(Debug)]
pub enum Lockout {
    /// Done; the account as it was before.
    Done(UserRow),
    /// No such account (or it is already deleted).
    NotFound,
    /// The account is the last active admin: nobody could manage Rubberduck without it.
    LastAdmin,
}

/// The account `id`, unless it is missing or the last active admin (who must stay).
fn removable(conn: &mut SqliteConnection, id: i32) -> Result<Result<UserRow, Lockout>, DbError> {
    let Some(row) = user(conn, id)? else {
        return Ok(Err(Lockout::NotFound));
    };
    if row.disabled_at.is_none() && row.role == "admin" && active_admin_count(conn)? <= 1 {
        return Ok(Err(Lockout::LastAdmin));
    }
    Ok(Ok(row))
}

/// Disables an account and ends its sessions and tokens, unless it is the last active admin.
/// The check and the change are one immediate transaction, so two admins disabling each other
/// at once cannot both succeed.
pub fn disable_user(
    conn: &mut SqliteConnection,
    id: i32,
    at: NaiveDateTime,
) -> Result<Lockout, DbError> {
    conn.immediate_transaction(|conn| {
        let row = match removable(conn, id)? {
            Ok(row) => row,
            Err(refusal) => return Ok(refusal),
        };
        if row.disabled_at.is_none() {
            diesel::update(users::table.find(id))
                .set(users::disabled_at.eq(Some(at)))
                .execute(conn)?;
        }
        end_access(conn, id)?;
        Ok(Lockout::Done(row))
    })
}

/// Lets a disabled account sign in again; false when there is no such account.
pub fn enable_user(conn: &mut SqliteConnection, id: i32) -> Result<bool, DbError> {
    let updated = diesel::update(users::table.find(id).filter(users::deleted_at.is_null()))
        .set(users::disabled_at.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    Ok(updated > 0)
}

/// Deletes an account, leaving a tombstone: the email is renamed (freeing it for a new account),
/// the password wiped, sessions and tokens removed. Refused for the last active admin.
pub fn delete_user(
    conn: &mut SqliteConnection,
    id: i32,
    at: NaiveDateTime,
) -> Result<Lockout, DbError> {
    conn.immediate_transaction(|conn| {
        let row = match removable(conn, id)? {
            Ok(row) => row,
            Err(refusal) => return Ok(refusal),
        };
        // Spaces never pass `normalize_email`, so no sign-in or new account can match this.
        let tombstone = format!("{} (deleted account {id})", row.email);
        diesel::update(users::table.find(id))
            .set((
                users::email.eq(tombstone),
                users::password_hash.eq(""),
                users::disabled_at.eq(Some(row.disabled_at.unwrap_or(at))),
                users::deleted_at.eq(Some(at)),
            ))
            .execute(conn)?;
        end_access(conn, id)?;
        Ok(Lockout::Done(row))
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

/// Every token with the email of its owner, newest first.
pub fn all_tokens(conn: &mut SqliteConnection) -> Result<Vec<(ApiTokenRow, String)>, DbError> {
    Ok(api_tokens::table
        .inner_join(users::table)
        .order(api_tokens::id.desc())
        .select((ApiTokenRow::as_select(), users::email))
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

/// Revokes any token (an admin's call); false when there is no such token.
pub fn delete_any_token(conn: &mut SqliteConnection, id: i32) -> Result<bool, DbError> {
    let deleted = diesel::delete(api_tokens::table.find(id)).execute(conn)?;
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

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;

    use super::*;
    use crate::db::old_schema::{migrated_before, revert_through};

    fn count(conn: &mut SqliteConnection, table: &str, user: i32) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {table} WHERE user_id = {user}"
        ))
        .get_result::<Count>(conn)
        .expect("count")
        .n
    }

    #[test]
    fn accounts_from_before_are_active_and_the_last_admin_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = migrated_before(&dir, "2026-11-24-100008");
        conn.batch_execute(
            "INSERT INTO users VALUES (1, 'admin@localhost', 'x', 'admin', '2026-11-24 10:00:00');
             INSERT INTO users VALUES (2, 'ada@example.com', 'x', 'member', '2026-11-24 10:00:00');
             INSERT INTO sessions VALUES (1, 's1', 2, 'c', '2026-11-24 10:00:00', '2026-11-24 10:00:00');
             INSERT INTO api_tokens VALUES (1, 2, 'ci', 't1', 'rd_abcd', '2026-11-24 10:00:00', NULL);
             INSERT INTO proxies (id, name, provider, port, created_at, updated_at, owner_id)
                 VALUES (1, 'Ada''s', 'openai', 9999, '2026-11-24 10:00:00', '2026-11-24 10:00:00', 2);",
        )
        .expect("accounts in the old schema");
        conn.run_pending_migrations(crate::db::MIGRATIONS)
            .expect("the remaining migrations");
        assert!(active_user(&mut conn, 2).expect("query").is_some());
        let at = chrono::Utc::now().naive_utc();

        assert!(matches!(
            disable_user(&mut conn, 1, at).expect("query"),
            Lockout::LastAdmin
        ));
        assert!(active_user(&mut conn, 1).expect("query").is_some());
        assert!(matches!(
            disable_user(&mut conn, 2, at).expect("query"),
            Lockout::Done(_)
        ));
        assert!(active_user(&mut conn, 2).expect("query").is_none());
        assert_eq!(count(&mut conn, "sessions", 2), 0);
        assert_eq!(count(&mut conn, "api_tokens", 2), 0);
        assert!(enable_user(&mut conn, 2).expect("query"));
        assert!(active_user(&mut conn, 2).expect("query").is_some());

        // Deleting leaves a tombstone the proxy still points at; the email is free again.
        assert!(matches!(
            delete_user(&mut conn, 2, at).expect("query"),
            Lockout::Done(_)
        ));
        assert!(user(&mut conn, 2).expect("query").is_none());
        assert!(
            user_by_email(&mut conn, "ada@example.com")
                .expect("query")
                .is_none()
        );
        assert!(matches!(
            delete_user(&mut conn, 2, at).expect("query"),
            Lockout::NotFound
        ));
        assert_eq!(users(&mut conn).expect("query").len(), 1);

        revert_through(&mut conn, "2026-11-24-100008");
        conn.batch_execute("SELECT id, email, password_hash, role, created_at FROM users;")
            .expect("the old columns are back as they were");
    }
}
