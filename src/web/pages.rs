//! HTML pages. Each fragment URL answers HTMX with the fragment and a plain browser with the
//! whole page; each form also works as a plain POST followed by a redirect.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use std::collections::HashMap;

use super::AppState;
use super::dashboard;
use super::error::PageError;
use super::failures::FailureForm;
use super::format;
use super::views::{
    CacheModal, ConfirmDeletePage, CreateModal, CreatedModal, DashboardPage,
    DashboardStatsFragment, EditModal, FailuresModal, FormErrors, PortCheck, ProxiesPage,
    ProxyCard, ProxyCardFragment, ProxyFilters, ProxyForm, ProxyGrid, ProxyHost, provider_options,
};
use crate::auth::{Access, Caller};
use crate::faults::{FailureConfig, INJECTABLE_STATUSES};
use crate::ids::ProxyId;
use crate::registry::input::ProxyInput;
use crate::registry::{ProxyRegistry, RegistryError};

pub(super) type PageResult = Result<HttpResponse, PageError>;

/// Tells open pages that the set of proxies changed, so the grid reloads itself.
const PROXIES_CHANGED: (&str, &str) = ("HX-Trigger", "proxies-changed");

pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| PageError::BadRequest(format!("invalid form: {err}")).into())
}

/// An HTMX request wants a fragment; anything else (a reload, a plain form) the whole page.
pub(super) fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request") && !req.headers().contains_key("HX-Boosted")
}

pub(super) fn html(req: &HttpRequest, status: StatusCode, template: &impl Template) -> PageResult {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(render(req, template)?))
}

/// Renders with the caller at hand: the layout shows who is signed in, and forms and HTMX
/// requests carry the session's CSRF token.
pub(super) fn render(req: &HttpRequest, template: &impl Template) -> Result<String, askama::Error> {
    let values = req.extensions().get::<Caller>().map(PageValues::of);
    render_for(values.as_ref(), template)
}

pub(super) fn render_for(
    values: Option<&PageValues>,
    template: &impl Template,
) -> Result<String, askama::Error> {
    match values {
        Some(values) => template.render_with_values(values),
        None => template.render(),
    }
}

/// What every page may show of the caller (`askama::get_value` in templates).
#[derive(Debug, Clone)]
pub(super) struct PageValues {
    csrf_token: String,
    email: String,
    is_admin: bool,
}

impl PageValues {
    pub(super) fn of(caller: &Caller) -> Self {
        PageValues {
            csrf_token: caller.csrf_token().unwrap_or_default().to_owned(),
            email: caller.user.email.clone(),
            is_admin: caller.is_admin(),
        }
    }
}

impl askama::Values for PageValues {
    fn get_value<'a>(&'a self, key: &str) -> Option<&'a dyn std::any::Any> {
        match key {
            "csrf_token" if !self.csrf_token.is_empty() => Some(&self.csrf_token),
            "email" => Some(&self.email),
            "is_admin" => Some(&self.is_admin),
            _ => None,
        }
    }
}

/// What the signed-in caller may see. The guard put the caller there before any page handler
/// runs.
pub(super) fn access(req: &HttpRequest) -> Result<Access, PageError> {
    req.extensions()
        .get::<Caller>()
        .map(Caller::access)
        .ok_or_else(|| PageError::BadRequest("sign in first".into()))
}

/// An HTMX answer that also makes the proxy grid reload (the modal's content is `body`; empty
/// closes it).
fn proxies_changed(body: String) -> PageResult {
    Ok(HttpResponse::Ok()
        .insert_header(PROXIES_CHANGED)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish()
}

fn cards(req: &HttpRequest, registry: &ProxyRegistry) -> Result<Vec<ProxyCard>, PageError> {
    let host = ProxyHost::for_request(req, registry.proxy_host());
    Ok(registry
        .list_for(access(req)?)
        .iter()
        .map(|snapshot| ProxyCard::new(snapshot, &host))
        .collect())
}

fn card(req: &HttpRequest, registry: &ProxyRegistry, id: ProxyId) -> Result<ProxyCard, PageError> {
    let host = ProxyHost::for_request(req, registry.proxy_host());
    Ok(ProxyCard::new(&registry.get_for(id, access(req)?)?, &host))
}

pub async fn dashboard(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> PageResult {
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let stats = dashboard::build(&state, &host, &caller).await?;
    html(&req, StatusCode::OK, &DashboardPage { stats })
}

pub async fn dashboard_stats_fragment(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> PageResult {
    if !is_htmx(&req) {
        return Ok(see_other("/"));
    }
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let stats = dashboard::build(&state, &host, &caller).await?;
    html(&req, StatusCode::OK, &DashboardStatsFragment { stats })
}

fn proxies_page(
    req: &HttpRequest,
    state: &AppState,
    filters: ProxyFilters,
    modal: Option<String>,
) -> Result<ProxiesPage, PageError> {
    Ok(ProxiesPage {
        totals: state.registry.totals(access(req)?),
        cards: filters.apply(cards(req, &state.registry)?),
        filters,
        providers: provider_options(),
        modal,
    })
}

pub async fn proxies(
    req: HttpRequest,
    state: web::Data<AppState>,
    filters: web::Query<ProxyFilters>,
) -> PageResult {
    let filters = filters.into_inner();
    if is_htmx(&req) {
        let cards = filters.apply(cards(&req, &state.registry)?);
        return html(&req, StatusCode::OK, &ProxyGrid { filters, cards });
    }
    html(
        &req,
        StatusCode::OK,
        &proxies_page(&req, &state, filters, None)?,
    )
}

/// The modal alone for HTMX; otherwise the Proxies page with the modal open.
fn modal_response(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    modal: &impl Template,
) -> PageResult {
    if is_htmx(req) {
        return html(req, status, modal);
    }
    let page = proxies_page(
        req,
        state,
        ProxyFilters::default(),
        Some(render(req, modal)?),
    )?;
    html(req, status, &page)
}

pub async fn new_proxy(req: HttpRequest, state: web::Data<AppState>) -> PageResult {
    let modal = CreateModal {
        form: ProxyForm {
            provider: "openai".into(),
            ..ProxyForm::default()
        },
        errors: FormErrors::default(),
        providers: provider_options(),
    };
    modal_response(&req, &state, StatusCode::OK, &modal)
}

pub async fn create_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<ProxyForm>,
) -> PageResult {
    let form = form.into_inner();
    let created = match super::check_proxy_quota(&state, &caller) {
        Ok(()) => {
            state
                .registry
                .create(&form.to_input(true), true, caller.user.id, caller.access())
                .await
        }
        Err(error) => Err(RegistryError::Invalid(vec![error])),
    };
    match created {
        Ok(created) => match created.warning {
            Some(warning) if is_htmx(&req) => {
                let card = card(&req, &state.registry, created.snapshot.spec.id)?;
                proxies_changed(render(&req, &CreatedModal { card, warning })?)
            }
            _ if is_htmx(&req) => proxies_changed(String::new()),
            _ => Ok(see_other("/proxies")),
        },
        Err(RegistryError::Invalid(errors)) => {
            let modal = CreateModal {
                form,
                errors: errors.into(),
                providers: provider_options(),
            };
            // htmx swaps only 2xx answers by default, so the re-rendered form goes out as 200.
            let status = if is_htmx(&req) {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            modal_response(&req, &state, status, &modal)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct PortCheckQuery {
    #[serde(default)]
    port: String,
    id: Option<i32>,
}

/// Live feedback under the port field: taken by another proxy, or busy in the OS.
pub async fn port_check(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<PortCheckQuery>,
) -> PageResult {
    let (message, warning) =
        match state
            .registry
            .check_port(query.port.trim(), query.id.map(ProxyId), access(&req)?)
        {
            Ok(None) => (None, false),
            Ok(Some(warning)) => (Some(warning), true),
            Err(error) => (Some(error), false),
        };
    html(&req, StatusCode::OK, &PortCheck { message, warning })
}

pub async fn proxy_card(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    if !is_htmx(&req) {
        return Ok(see_other("/proxies"));
    }
    let card = card(&req, &state.registry, ProxyId(*id))?;
    html(&req, StatusCode::OK, &ProxyCardFragment { card })
}

pub async fn edit_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let snapshot = state.registry.get_for(ProxyId(*id), access(&req)?)?;
    let modal = EditModal {
        id: *id,
        provider_name: snapshot.spec.provider.name(),
        running: snapshot.status.is_active(),
        form: ProxyForm::from_spec(&snapshot.spec),
        errors: FormErrors::default(),
    };
    modal_response(&req, &state, StatusCode::OK, &modal)
}

pub async fn update_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    form: web::Form<ProxyForm>,
) -> PageResult {
    let id = ProxyId(*id);
    let form = form.into_inner();
    let edit: ProxyInput = form.to_input(false);
    match state.registry.update(id, edit, access(&req)?).await {
        Ok(_) if is_htmx(&req) => proxies_changed(String::new()),
        Ok(_) => Ok(see_other("/proxies")),
        Err(RegistryError::Invalid(errors)) => {
            let snapshot = state.registry.get_for(id, access(&req)?)?;
            let modal = EditModal {
                id: id.0,
                provider_name: snapshot.spec.provider.name(),
                running: snapshot.status.is_active(),
                form,
                errors: errors.into(),
            };
            let status = if is_htmx(&req) {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            modal_response(&req, &state, status, &modal)
        }
        Err(e) => Err(e.into()),
    }
}

/// After a card action: the fresh card for HTMX, back to the list for a plain form.
fn card_response(req: &HttpRequest, registry: &ProxyRegistry, id: ProxyId) -> PageResult {
    if !is_htmx(req) {
        return Ok(see_other("/proxies"));
    }
    let card = card(req, registry, id)?;
    html(req, StatusCode::OK, &ProxyCardFragment { card })
}

pub async fn start_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let id = ProxyId(*id);
    state.registry.start(id, access(&req)?).await?;
    card_response(&req, &state.registry, id)
}

#[derive(Deserialize)]
pub struct StopForm {
    #[serde(default)]
    force: bool,
}

pub async fn stop_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    query: web::Query<StopForm>,
) -> PageResult {
    let id = ProxyId(*id);
    state.registry.stop(id, !query.force, access(&req)?).await?;
    card_response(&req, &state.registry, id)
}

pub async fn restart_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let id = ProxyId(*id);
    state.registry.restart(id, access(&req)?).await?;
    card_response(&req, &state.registry, id)
}

pub async fn duplicate_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    state
        .registry
        .duplicate(ProxyId(*id), access(&req)?)
        .await?;
    if is_htmx(&req) {
        return proxies_changed(String::new());
    }
    Ok(see_other("/proxies"))
}

pub async fn confirm_delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let card = card(&req, &state.registry, ProxyId(*id))?;
    html(&req, StatusCode::OK, &ConfirmDeletePage { card })
}

pub async fn delete_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    state.registry.delete(ProxyId(*id), access(&req)?).await?;
    if is_htmx(&req) {
        return proxies_changed(String::new());
    }
    Ok(see_other("/proxies"))
}

async fn cache_modal(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    notice: Option<String>,
) -> Result<CacheModal, PageError> {
    let card = card(req, &state.registry, id)?;
    let info = state.registry.cache_info(id, access(req)?).await?;
    Ok(CacheModal {
        size: format::bytes(info.counts.bytes),
        card,
        info,
        notice,
    })
}

pub async fn cache_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let modal = cache_modal(&req, &state, ProxyId(*id), None).await?;
    modal_response(&req, &state, StatusCode::OK, &modal)
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
    let modal = cache_modal(&req, &state, id, Some(notice)).await?;
    proxies_changed(render(&req, &modal)?)
}

fn failures_modal(
    card: ProxyCard,
    form: FailureForm,
    errors: FormErrors,
    notice: Option<String>,
) -> FailuresModal {
    FailuresModal {
        card,
        form,
        errors,
        statuses: INJECTABLE_STATUSES,
        notice,
    }
}

pub async fn failure_settings(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let id = ProxyId(*id);
    let snapshot = state.registry.get_for(id, access(&req)?)?;
    let form = FailureForm::from_config(&snapshot.spec.failure_config);
    let modal = failures_modal(
        card(&req, &state.registry, id)?,
        form,
        FormErrors::default(),
        None,
    );
    modal_response(&req, &state, StatusCode::OK, &modal)
}

async fn save_failures(
    req: &HttpRequest,
    state: &AppState,
    id: ProxyId,
    form: FailureForm,
    notice: &str,
) -> PageResult {
    let saved = match form.to_config() {
        Ok(config) => {
            state
                .registry
                .set_failure_config(id, config, access(req)?)
                .await
        }
        Err(errors) => Err(RegistryError::Invalid(errors)),
    };
    match saved {
        Ok(_) if !is_htmx(req) => Ok(see_other("/proxies")),
        Ok(snapshot) => {
            let form = FailureForm::from_config(&snapshot.spec.failure_config);
            let modal = failures_modal(
                card(req, &state.registry, id)?,
                form,
                FormErrors::default(),
                Some(notice.to_owned()),
            );
            proxies_changed(render(req, &modal)?)
        }
        Err(RegistryError::Invalid(errors)) => {
            let modal = failures_modal(card(req, &state.registry, id)?, form, errors.into(), None);
            let status = if is_htmx(req) {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            modal_response(req, state, status, &modal)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update_failures(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    fields: web::Form<HashMap<String, String>>,
) -> PageResult {
    let form = FailureForm::from_fields(fields.into_inner());
    save_failures(
        &req,
        &state,
        ProxyId(*id),
        form,
        "Saved: in force from the next request.",
    )
    .await
}

pub async fn reset_failures(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> PageResult {
    let form = FailureForm::from_config(&FailureConfig::default());
    save_failures(
        &req,
        &state,
        ProxyId(*id),
        form,
        "Every failure is off again.",
    )
    .await
}

pub async fn close_modal() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body("")
}

pub async fn not_found(req: HttpRequest) -> PageResult {
    Err(PageError::NotFound(format!(
        "There is no page at {}.",
        req.path()
    )))
}
