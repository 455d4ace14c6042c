//! The JSON API for accounts and API tokens. Admins list, disable, enable and delete accounts and
//! see and revoke every token; members see and revoke only their own tokens.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::auth::{Caller, User};
use crate::ids::UserId;

type ApiResult = Result<HttpResponse, ApiError>;

/// `GET /api/users` (admins): every account that is not deleted.
pub async fn list_users(state: web::Data<AppState>, caller: Caller) -> ApiResult {
    let users = state.accounts.users(&caller).await?;
    Ok(HttpResponse::Ok().json(users))
}

#[derive(Serialize)]
struct LockedOut {
    #[serde(flatten)]
    user: User,
    /// How many of the account's proxies were running and are now stopped.
    proxies_stopped: usize,
}

/// `POST /api/users/{id}/disable` (admins): the account's sessions and tokens stop working and
/// its proxies stop, at once.
pub async fn disable_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let user = state.accounts.disable_user(&caller, UserId(*id)).await?;
    let proxies_stopped = super::stop_proxies_of(&state, user.id).await?;
    Ok(HttpResponse::Ok().json(LockedOut {
        user,
        proxies_stopped,
    }))
}

/// `POST /api/users/{id}/enable` (admins): the account may sign in again.
pub async fn enable_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let user = state.accounts.enable_user(&caller, UserId(*id)).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `DELETE /api/users/{id}` (admins): the account goes; its proxies stop and stay, with their
/// logs, for admins.
pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let user = state.accounts.delete_user(&caller, UserId(*id)).await?;
    super::stop_proxies_of(&state, user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct TokensQuery {
    /// Every user's tokens (admins only).
    #[serde(default)]
    all: bool,
}

/// `GET /api/tokens`: the caller's tokens; `?all=true` every user's (admins).
pub async fn list_tokens(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<TokensQuery>,
) -> ApiResult {
    let tokens = if query.all {
        state.accounts.all_tokens(&caller).await?
    } else {
        state.accounts.tokens(&caller).await?
    };
    Ok(HttpResponse::Ok().json(tokens))
}

/// `DELETE /api/tokens/{id}`: a member revokes one of their tokens (another's is not found), an
/// admin any.
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    state.accounts.revoke_token(&caller, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
