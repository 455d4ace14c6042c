//! A proxy's cache on the Proxies page (Actions → Cache): the cache modal with its numbers, its
//! entries (see `cache_view`) and fixtures directory, clearing it, and its recorded answers as
//! fixture files: export (a download), import (an uploaded file) and reload from the directory,
//! each reported inline.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use futures_util::StreamExt;

use super::AppState;
use super::cache_view::{EntriesParams, EntriesView};
use super::cards::ProxyCard;
use super::error::PageError;
use super::fixtures_api::{self, ExportQuery, MAX_UPLOAD_BYTES};
use super::format;
use super::pages::{PageResult, access, is_htmx, render, see_other};
use super::proxies_page::{card, modal_response, proxies_changed};
use crate::cache::CacheInfo;
use crate::fixtures::Rejected;
use crate::ids::ProxyId;
use crate::registry::{FixturesLoad, ImportReport, RegistryError};
use crate::validation::FieldError;

/// The name of the upload's file field in the import form.
const FILE_FIELD: &str = "file";
/// How many rejected files a report lists; the rest are counted.
const REJECTED_SHOWN: usize = 20;

#[derive(Template)]
#[template(path = "proxies/_cache_modal.html")]
pub struct CacheModal {
    pub card: ProxyCard,
    pub info: CacheInfo,
    pub size: String,
    pub notice: Option<String>,
    /// What the last load of the fixtures directory did (when the proxy is bound to one and
    /// it has been loaded since Rubberduck started).
    pub last_load: Option<FixturesLoad>,
    /// What the import or reload just done did.
    pub report: Option<FixturesReport>,
    /// Why the import or reload just tried did nothing.
    pub fixtures_error: Option<String>,
    /// A page of the entries.
    pub entries: EntriesView,
}

/// An import's or a reload's outcome, as the cache modal shows it.
pub struct FixturesReport {
    pub outcome: Outcome,
    /// The first of the files (or lines) that were refused, each with its reason.
    pub rejected: Vec<Rejected>,
    pub rejected_total: usize,
}

pub enum Outcome {
    Imported {
        file: String,
        added: usize,
        replaced: usize,
    },
    Reloaded {
        dir: String,
        files: usize,
        loaded: usize,
        millis: u64,
    },
}

impl FixturesReport {
    fn imported(file: String, report: ImportReport) -> Self {
        FixturesReport::new(
            Outcome::Imported {
                file,
                added: report.added,
                replaced: report.replaced,
            },
            report.rejected,
        )
    }

    fn reloaded(load: FixturesLoad) -> Self {
        FixturesReport::new(
            Outcome::Reloaded {
                dir: load.dir,
                files: load.files,
                loaded: load.loaded,
                millis: load.millis,
            },
            load.rejected,
        )
    }

    fn new(outcome: Outcome, mut rejected: Vec<Rejected>) -> Self {
        let rejected_total = rejected.len();
        rejected.truncate(REJECTED_SHOWN);
        FixturesReport {
            outcome,
            rejected,
            rejected_total,
        }
    }

    /// Nothing came in: the file held no fixture this proxy can use.
    pub fn nothing_taken(&self) -> bool {
        match self.outcome {
            Outcome::Imported {
                added, replaced, ..
            } => added + replaced == 0,
            Outcome::Reloaded { loaded, .. } => loaded == 0 && self.rejected_total > 0,
        }
    }

    /// Rejected entries the list leaves out.
    pub fn rejected_hidden(&self) -> usize {
        self.rejected_total - self.rejected.len()
    }
}

struct ModalParts {
    notice: Option<String>,
    report: Option<FixturesReport>,
    fixtures_error: Option<String>,
    /// The entries to show; the first page when `None`.
    entries: Option<EntriesView>,
}

impl ModalParts {
    fn notice(notice: String) -> Self {
        ModalParts {
            notice: Some(notice),
            report: None,
            fixtures_error: None,
            entries: None,
        }
    }

    fn plain() -> Self {
        ModalParts {
            notice: None,
            report: None,
            fixtures_error: None,
            entries: None,
        }
    }
}

async fn cache_modal(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    parts: ModalParts,
) -> Result<CacheModal, PageError> {
    let card = card(req, &state.registry, id)?;
    let access = access(req)?;
    let info = state.registry.cache_info(id, access).await?;
    let entries = match parts.entries {
        Some(entries) => entries,
        None => EntriesView::load(state, req, id, EntriesParams::default()).await?,
    };
    Ok(CacheModal {
        entries,
        size: format::bytes(info.counts.bytes),
        last_load: state.registry.fixtures_load(id, access),
        card,
        info,
        notice: parts.notice,
        report: parts.report,
        fixtures_error: parts.fixtures_error,
    })
}

pub async fn cache_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let modal = cache_modal(&req, &state, ProxyId(*id), ModalParts::plain()).await?;
    modal_response(&req, &state, StatusCode::OK, &modal)
}

/// The Proxies page with the cache modal open on these entries (for a browser without HTMX).
pub(super) async fn modal_with_entries(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    entries: EntriesView,
) -> PageResult {
    let parts = ModalParts {
        entries: Some(entries),
        ..ModalParts::plain()
    };
    let modal = cache_modal(req, state, id, parts).await?;
    modal_response(req, state, StatusCode::OK, &modal)
}

pub async fn clear_cache(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let id = ProxyId(*id);
    let removed = state.registry.clear_cache(id, access(&req)?).await?;
    if !is_htmx(&req) {
        return Ok(see_other("/proxies"));
    }
    let notice = format!(
        "Removed {removed} cached {}.",
        if removed == 1 { "answer" } else { "answers" }
    );
    let modal = cache_modal(&req, &state, id, ModalParts::notice(notice)).await?;
    proxies_changed(render(&req, &modal)?)
}

/// `GET /proxies/{id}/cache/export[?format=jsonl]`: the proxy's fixtures as a download.
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    query: web::Query<ExportQuery>,
) -> PageResult {
    let format = query.format().map_err(PageError::BadRequest)?;
    let (name, bytes) = state
        .registry
        .export_cache(ProxyId(*id), access(&req)?, format)
        .await?;
    Ok(fixtures_api::download(format, name, bytes))
}

/// `POST /proxies/{id}/cache/import`, a multipart form with the file: merges it into the
/// cache and shows what was added, replaced and rejected.
pub async fn import(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    form: Multipart,
) -> PageResult {
    let id = ProxyId(*id);
    let outcome = match read_upload(form).await {
        Ok(upload) => state
            .registry
            .import_cache(id, access(&req)?, upload.bytes)
            .await
            .map(|report| FixturesReport::imported(upload.file_name, report)),
        Err(message) => Err(invalid(message)),
    };
    fixtures_answer(&req, &state, id, outcome).await
}

/// `POST /proxies/{id}/cache/reload`: the cache becomes the fixtures directory's contents.
pub async fn reload(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let id = ProxyId(*id);
    let outcome = state
        .registry
        .reload_fixtures(id, access(&req)?)
        .await
        .map(FixturesReport::reloaded);
    fixtures_answer(&req, &state, id, outcome).await
}

fn invalid(message: String) -> RegistryError {
    RegistryError::Invalid(vec![FieldError::new(FILE_FIELD, message)])
}

/// The cache modal with the report, or with the reason nothing happened; for a plain form the
/// Proxies page with that modal open.
async fn fixtures_answer(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    outcome: Result<FixturesReport, RegistryError>,
) -> PageResult {
    let (parts, status) = match outcome {
        Ok(report) => (
            ModalParts {
                report: Some(report),
                ..ModalParts::plain()
            },
            StatusCode::OK,
        ),
        Err(RegistryError::Invalid(errors)) => {
            let message = errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join(" ");
            (
                ModalParts {
                    fixtures_error: Some(message),
                    ..ModalParts::plain()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(e) => return Err(e.into()),
    };
    let modal = cache_modal(req, state, id, parts).await?;
    if is_htmx(req) {
        // htmx swaps only 2xx answers by default; the cards' numbers change with an import.
        return proxies_changed(render(req, &modal)?);
    }
    modal_response(req, state, status, &modal)
}

struct Upload {
    file_name: String,
    bytes: Vec<u8>,
}

/// The file of the import form, read whole (bounded); `Err` says, for the user, why there is
/// none to import.
async fn read_upload(mut form: Multipart) -> Result<Upload, String> {
    let unreadable = |e: actix_multipart::MultipartError| {
        format!("The upload could not be read ({e}); choose the file again and retry.")
    };
    let mut upload = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(unreadable)?;
        if field.name() != Some(FILE_FIELD) {
            continue;
        }
        let file_name = field
            .content_disposition()
            .and_then(|disposition| disposition.get_filename())
            .unwrap_or_default()
            .to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(unreadable)?;
            if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(format!(
                    "{} is larger than {}, the most an import takes.",
                    shown_name(&file_name),
                    format::bytes(MAX_UPLOAD_BYTES as u64)
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        upload = Some(Upload { file_name, bytes });
    }
    match upload {
        Some(upload) if upload.file_name.is_empty() && upload.bytes.is_empty() => Err(no_file()),
        Some(upload) if upload.bytes.is_empty() => Err(format!(
            "{} is empty: choose a .tar.gz or a .jsonl file from an export.",
            shown_name(&upload.file_name)
        )),
        Some(upload) => Ok(upload),
        None => Err(no_file()),
    }
}

fn no_file() -> String {
    "Choose a file to import first: a .tar.gz or a .jsonl file from an export.".to_owned()
}

fn shown_name(file_name: &str) -> String {
    if file_name.is_empty() {
        "The file".to_owned()
    } else {
        format!("“{file_name}”")
    }
}
