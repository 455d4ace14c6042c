//! The entries of a proxy's cache in its modal (Actions → Cache): a page of them, searchable by
//! model or prompt; one entry's request and answer; deleting one. Each URL answers HTMX with
//! the entries fragment and a plain browser with the Proxies page, the cache modal open.

use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;

use super::AppState;
use super::cache_page;
use super::error::PageError;
use super::format;
use super::pages::{PageResult, access, is_htmx, render, see_other};
use super::proxies_page::proxies_changed;
use crate::cache::{Payload, RecordedChunk};
use crate::fixtures::{Fixture, kind_of};
use crate::ids::ProxyId;
use crate::registry::{EntriesQuery, EntryListing};

/// Entries a page lists.
pub const PAGE_SIZE: u64 = 20;
/// How much of a body the entry view shows; the export has it all.
const SHOWN_BODY_CHARS: usize = 64 * 1024;

/// Where the list is: the search and the page.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntriesParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub offset: u64,
}

impl EntriesParams {
    /// The query string that keeps this place (`?q=…&offset=…`), empty for the first page.
    fn query(&self, offset: u64) -> String {
        let mut pairs = Vec::new();
        if !self.q.trim().is_empty() {
            pairs.push(("q", self.q.trim().to_owned()));
        }
        if offset > 0 {
            pairs.push(("offset", offset.to_string()));
        }
        match serde_urlencoded::to_string(pairs) {
            Ok(query) if !query.is_empty() => format!("?{query}"),
            _ => String::new(),
        }
    }
}

pub struct EntryRow {
    pub entry: EntryListing,
    pub size: String,
}

/// The entries section of the cache modal.
#[derive(Template)]
#[template(path = "proxies/_cache_entries_fragment.html")]
pub struct EntriesView {
    pub proxy_id: i32,
    pub params: EntriesParams,
    pub rows: Vec<EntryRow>,
    pub total: u64,
    pub notice: Option<String>,
    pub detail: Option<EntryDetail>,
    /// After a delete: the proxy's entry count and size now, for the modal's numbers (an HTMX
    /// out-of-band swap).
    pub counts_now: Option<(u64, String)>,
}

impl EntriesView {
    fn base(&self) -> String {
        format!("/proxies/{}/cache/entries", self.proxy_id)
    }

    pub fn entry_url(&self, key: &str) -> String {
        format!(
            "{}/{key}{}",
            self.base(),
            self.params.query(self.params.offset)
        )
    }

    pub fn delete_url(&self, key: &str) -> String {
        format!("{}/{key}/delete", self.base())
    }

    pub fn list_url(&self) -> String {
        format!("{}{}", self.base(), self.params.query(self.params.offset))
    }

    pub fn newer_url(&self) -> Option<String> {
        (self.params.offset > 0).then(|| {
            let offset = self.params.offset.saturating_sub(PAGE_SIZE);
            format!("{}{}", self.base(), self.params.query(offset))
        })
    }

    pub fn older_url(&self) -> Option<String> {
        let next = self.params.offset + PAGE_SIZE;
        (next < self.total).then(|| format!("{}{}", self.base(), self.params.query(next)))
    }

    /// "21–40" (or "0" when the page is empty).
    pub fn range(&self) -> String {
        if self.rows.is_empty() {
            return "0".to_owned();
        }
        let first = self.params.offset + 1;
        format!("{first}–{}", self.params.offset + self.rows.len() as u64)
    }

    pub fn searched(&self) -> bool {
        !self.params.q.trim().is_empty()
    }

    /// Loads the page `params` names.
    pub async fn load(
        state: &AppState,
        req: &HttpRequest,
        id: ProxyId,
        params: EntriesParams,
    ) -> Result<Self, PageError> {
        let query = EntriesQuery {
            search: Some(params.q.clone()),
            limit: PAGE_SIZE,
            offset: params.offset,
        };
        let access = access(req)?;
        let mut page = state
            .registry
            .cache_entries(id, access, query.clone())
            .await?;
        let mut params = params;
        // Past the end (the last entry of the last page was deleted): the last page.
        if page.entries.is_empty() && params.offset > 0 && page.total > 0 {
            params.offset = (page.total - 1) / PAGE_SIZE * PAGE_SIZE;
            let query = EntriesQuery {
                offset: params.offset,
                ..query
            };
            page = state.registry.cache_entries(id, access, query).await?;
        }
        page.entries.truncate(PAGE_SIZE as usize);
        Ok(EntriesView {
            proxy_id: id.0,
            rows: page
                .entries
                .into_iter()
                .map(|entry| EntryRow {
                    size: format::bytes(entry.size_bytes),
                    entry,
                })
                .collect(),
            total: page.total,
            params,
            notice: None,
            detail: None,
            counts_now: None,
        })
    }
}

/// One entry's request and answer, as the entry view shows them.
pub struct EntryDetail {
    pub key: String,
    pub kind: Option<String>,
    pub model: Option<String>,
    pub recorded_at: String,
    /// Whether the request was recorded (entries stored before fixtures have none).
    pub recorded: bool,
    pub method: String,
    /// Path and the query parameters that change the answer.
    pub target: String,
    pub request_body: Option<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// A plain answer's body.
    pub response_body: Option<String>,
    /// A stream's chunks, in order.
    pub chunks: Vec<ChunkView>,
    pub tokens: String,
}

pub struct ChunkView {
    pub after_ms: u64,
    pub text: String,
}

impl EntryDetail {
    fn of(fixture: Fixture) -> Self {
        let request = fixture.request;
        let recorded = !request.path.is_empty();
        let query = request
            .query
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&");
        let target = if query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{query}", request.path)
        };
        let chunks = fixture
            .response
            .chunks
            .unwrap_or_default()
            .into_iter()
            .map(|chunk| ChunkView {
                after_ms: chunk.after_ms,
                text: chunk_text(&chunk),
            })
            .collect();
        EntryDetail {
            kind: recorded.then(|| kind_of(&request.path)),
            model: fixture.model,
            recorded_at: fixture.recorded_at,
            recorded,
            method: request.method,
            target,
            request_body: shown(&request.payload),
            status: fixture.response.status,
            headers: fixture.response.headers.into_iter().collect(),
            response_body: shown(&fixture.response.payload),
            chunks,
            tokens: format::tokens(
                fixture
                    .usage
                    .input_tokens
                    .and_then(|n| i64::try_from(n).ok()),
                fixture
                    .usage
                    .output_tokens
                    .and_then(|n| i64::try_from(n).ok()),
            ),
            key: fixture.key,
        }
    }

    pub fn short_key(&self) -> &str {
        self.key.get(..12).unwrap_or(&self.key)
    }
}

/// A body for reading: JSON pretty-printed, text as it is, binary as base64; long ones cut.
fn shown(payload: &Payload) -> Option<String> {
    let text = match (&payload.body, &payload.body_text, &payload.body_base64) {
        (Some(json), _, _) => {
            serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
        }
        (None, Some(text), _) => text.clone(),
        (None, None, Some(base64)) => format!("(binary, as base64)\n{base64}"),
        (None, None, None) => return None,
    };
    Some(cut(text))
}

fn chunk_text(chunk: &RecordedChunk) -> String {
    match (&chunk.text, &chunk.base64) {
        (Some(text), _) => cut(text.trim_end().to_owned()),
        (None, Some(base64)) => cut(format!("(binary, as base64) {base64}")),
        (None, None) => String::new(),
    }
}

fn cut(text: String) -> String {
    match text.char_indices().nth(SHOWN_BODY_CHARS) {
        Some((end, _)) => format!(
            "{}\n… ({} more bytes; export the fixtures for all of it)",
            &text[..end],
            text.len() - end
        ),
        None => text,
    }
}

/// The list as HTMX wants it (the fragment), or the Proxies page with the cache modal open.
async fn answer(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    view: EntriesView,
    changed: bool,
) -> PageResult {
    if is_htmx(req) {
        let body = render(req, &view)?;
        if changed {
            // The cards' numbers change too.
            return proxies_changed(body);
        }
        return Ok(actix_web::HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(body));
    }
    cache_page::modal_with_entries(req, state, id, view).await
}

/// `GET /proxies/{id}/cache/entries?q=&offset=`: a page of entries.
pub async fn entries(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    params: web::Query<EntriesParams>,
) -> PageResult {
    let id = ProxyId(*id);
    let view = EntriesView::load(&state, &req, id, params.into_inner()).await?;
    answer(&req, &state, id, view, false).await
}

/// `GET /proxies/{id}/cache/entries/{key}?q=&offset=`: one entry's request and answer above
/// the list.
pub async fn entry(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
    params: web::Query<EntriesParams>,
) -> PageResult {
    let (id, key) = path.into_inner();
    let id = ProxyId(id);
    let fixture = state.registry.cache_entry(id, access(&req)?, &key).await?;
    let mut view = EntriesView::load(&state, &req, id, params.into_inner()).await?;
    view.detail = Some(EntryDetail::of(fixture));
    answer(&req, &state, id, view, false).await
}

/// `POST /proxies/{id}/cache/entries/{key}/delete`: deletes one entry; the list again, with a
/// notice.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
    form: web::Form<EntriesParams>,
) -> PageResult {
    let (id, key) = path.into_inner();
    let id = ProxyId(id);
    let access = access(&req)?;
    state.registry.delete_cache_entry(id, access, &key).await?;
    let params = form.into_inner();
    if !is_htmx(&req) {
        return Ok(see_other(&format!(
            "/proxies/{}/cache/entries{}",
            id.0,
            params.query(params.offset)
        )));
    }
    let mut view = EntriesView::load(&state, &req, id, params).await?;
    view.notice = Some(format!(
        "Deleted the entry {}: the same request is a miss now.",
        key.get(..12).unwrap_or(&key)
    ));
    let counts = state.registry.cache_info(id, access).await?.counts;
    view.counts_now = Some((counts.entries, format::bytes(counts.bytes)));
    answer(&req, &state, id, view, true).await
}
