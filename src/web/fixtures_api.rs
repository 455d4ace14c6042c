//! The admin API of a proxy's recorded answers: export, import, reload from its directory.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::fixtures::ArchiveFormat;
use crate::ids::ProxyId;
use crate::registry::ExplainRequest;

type ApiResult = Result<HttpResponse, ApiError>;

/// Largest upload `POST …/cache/import` takes, compressed.
pub const MAX_UPLOAD_BYTES: usize = 256 << 20;

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

impl ExportQuery {
    /// `.tar.gz` unless the query names another format.
    pub(super) fn format(&self) -> Result<ArchiveFormat, String> {
        match self.format.as_deref() {
            None => Ok(ArchiveFormat::TarGz),
            Some(format) => format.parse(),
        }
    }
}

/// `GET /api/proxies/{id}/cache/export[?format=jsonl]`: a `.tar.gz` of fixture files (or JSONL).
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    query: web::Query<ExportQuery>,
) -> ApiResult {
    let format = query.format().map_err(ApiError::BadRequest)?;
    let (name, bytes) = state
        .registry
        .export_cache(ProxyId(*id), caller.access(), format)
        .await?;
    Ok(download(format, name, bytes))
}

/// An export as a file the browser saves under `name`.
pub(super) fn download(format: ArchiveFormat, name: String, bytes: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        })
        .body(bytes)
}

/// `POST /api/proxies/{id}/cache/import` with a `.tar.gz` or JSONL body: merges, and says what
/// was added, replaced and rejected (with the reason for each).
pub async fn import(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    body: web::Bytes,
) -> ApiResult {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the fixtures as the request body: a .tar.gz from the export, or JSONL".into(),
        ));
    }
    let report = state
        .registry
        .import_cache(ProxyId(*id), caller.access(), body.to_vec())
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /api/proxies/{id}/cache/explain` with `{"method","path","query"?,"body","cassette"?}`:
/// whether it is cached, and the nearest recorded entries with the JSON paths that differ.
pub async fn explain(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    asked: web::Json<ExplainRequest>,
) -> ApiResult {
    let explanation = state
        .registry
        .explain_request(ProxyId(*id), caller.access(), asked.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(explanation))
}

/// `POST /api/proxies/{id}/cache/reload`: the proxy's cache becomes its fixtures directory's
/// contents again.
pub async fn reload(state: web::Data<AppState>, caller: Caller, id: web::Path<i32>) -> ApiResult {
    let report = state
        .registry
        .reload_fixtures(ProxyId(*id), caller.access())
        .await?;
    Ok(HttpResponse::Ok().json(report))
}
