//! The admin API of a proxy's cache entries: a page of them (searchable), one as its fixture
//! JSON, deleting one.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::ids::ProxyId;
use crate::registry::EntriesQuery;

type ApiResult = Result<HttpResponse, ApiError>;

/// Entries an API call lists unless it asks for another number.
const DEFAULT_LIMIT: u64 = 50;

#[derive(Debug, Deserialize)]
pub struct EntriesParams {
    q: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

/// `GET /api/proxies/{id}/cache/entries?q=&limit=&offset=` →
/// `{"entries":[{"key","kind","model","prompt","size_bytes","hits","recorded_at","last_hit_at","stream"}],"total"}`
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    params: web::Query<EntriesParams>,
) -> ApiResult {
    let params = params.into_inner();
    let query = EntriesQuery {
        search: params.q,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        offset: params.offset.unwrap_or(0),
    };
    let page = state
        .registry
        .cache_entries(ProxyId(*id), caller.access(), query)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/proxies/{id}/cache/entries/{key}`: the entry as its fixture file holds it.
pub async fn entry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(i32, String)>,
) -> ApiResult {
    let (id, key) = path.into_inner();
    let fixture = state
        .registry
        .cache_entry(ProxyId(id), caller.access(), &key)
        .await?;
    Ok(HttpResponse::Ok().json(fixture))
}

/// `DELETE /api/proxies/{id}/cache/entries/{key}` → `{"deleted":true}`, or 404.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(i32, String)>,
) -> ApiResult {
    let (id, key) = path.into_inner();
    state
        .registry
        .delete_cache_entry(ProxyId(id), caller.access(), &key)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": true })))
}
