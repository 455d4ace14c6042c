//! The Proxies page: the card grid with its filters, and the modals that create, configure,
//! delete and inspect proxies.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::AppState;
use super::cards::{ProxyCard, ProxyCardFragment};
use super::error::PageError;
use super::failures::FailureForm;
use super::pages::{FormErrors, PageResult, access, html, is_htmx, render, see_other};
use super::proxy_host::ProxyHost;
use super::script_rows::{OUTCOMES, OutcomeChoice, RowAction};
use crate::auth::Caller;
use crate::emulator;
use crate::faults::{FailureConfig, INJECTABLE_STATUSES};
use crate::ids::ProxyId;
use crate::providers::ProviderKind;
use crate::registry::input::{CacheInput, EmulatorInput, PortInput, ProxyInput, TagsInput};
use crate::registry::{ProxyRegistry, ProxySnapshot, RegistryError, Totals};
use crate::spec::ProxySpec;

/// Tells open pages that the set of proxies changed, so the grid reloads itself.
const PROXIES_CHANGED: (&str, &str) = ("HX-Trigger", "proxies-changed");

/// An HTMX answer that also makes the proxy grid reload (the modal's content is `body`; empty
/// closes it).
pub(super) fn proxies_changed(body: String) -> PageResult {
    Ok(HttpResponse::Ok()
        .insert_header(PROXIES_CHANGED)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

fn cards(req: &HttpRequest, registry: &ProxyRegistry) -> Result<Vec<ProxyCard>, PageError> {
    let host = ProxyHost::for_request(req, registry.proxy_host());
    Ok(registry
        .list_for(access(req)?)
        .iter()
        .map(|snapshot| ProxyCard::new(snapshot, &host))
        .collect())
}

pub(super) fn card(
    req: &HttpRequest,
    registry: &ProxyRegistry,
    id: ProxyId,
) -> Result<ProxyCard, PageError> {
    let host = ProxyHost::for_request(req, registry.proxy_host());
    Ok(ProxyCard::new(&registry.get_for(id, access(req)?)?, &host))
}

#[derive(Template)]
#[template(path = "proxies/list.html")]
pub struct ProxiesPage {
    pub totals: Totals,
    pub filters: ProxyFilters,
    pub cards: Vec<ProxyCard>,
    pub providers: Vec<ProviderOption>,
    /// A modal rendered open, for fragment URLs loaded as full pages.
    pub modal: Option<String>,
}

#[derive(Template)]
#[template(path = "proxies/_grid.html")]
pub struct ProxyGrid {
    pub filters: ProxyFilters,
    pub cards: Vec<ProxyCard>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProxyFilters {
    pub q: String,
    pub status: String,
    pub provider: String,
}

impl ProxyFilters {
    pub fn apply(&self, cards: Vec<ProxyCard>) -> Vec<ProxyCard> {
        cards.into_iter().filter(|c| self.admits(c)).collect()
    }

    pub fn status_is(&self, status: &str) -> bool {
        self.status == status
    }

    pub fn is_empty(&self) -> bool {
        self.q.trim().is_empty() && self.status.is_empty() && self.provider.is_empty()
    }

    fn admits(&self, card: &ProxyCard) -> bool {
        let query = self.q.trim().to_lowercase();
        let text_matches = query.is_empty()
            || [
                card.name.as_str(),
                card.description.as_str(),
                card.provider_name,
                card.provider_id,
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(&query))
            || card.port.to_string().contains(&query)
            || card.tags.iter().any(|t| t.to_lowercase().contains(&query));
        let status_matches = self.status.is_empty() || self.status == card.status;
        let provider_matches = self.provider.is_empty() || self.provider == card.provider_id;
        text_matches && status_matches && provider_matches
    }
}

pub struct ProviderOption {
    pub id: &'static str,
    pub name: &'static str,
}

pub fn provider_options() -> Vec<ProviderOption> {
    ProviderKind::ALL
        .iter()
        .map(|kind| ProviderOption {
            id: kind.id(),
            name: kind.name(),
        })
        .collect()
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
pub(super) fn modal_response(
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

#[derive(Template)]
#[template(path = "proxies/_create_modal.html")]
pub struct CreateModal {
    pub form: ProxyForm,
    pub errors: FormErrors,
    pub providers: Vec<ProviderOption>,
}

#[derive(Template)]
#[template(path = "proxies/_created_modal.html")]
pub struct CreatedModal {
    pub card: ProxyCard,
    pub warning: String,
}

/// The create and configure forms as typed, so a rejected form comes back with what was entered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProxyForm {
    pub name: String,
    pub provider: String,
    pub port: String,
    pub description: String,
    pub tags: String,
    pub upstream_url: String,
    /// Present on forms that show the cache settings (Configure); the create form leaves the
    /// defaults alone.
    pub cache_fields: Option<String>,
    /// Checkboxes: present ("on") when ticked.
    pub cache_enabled: Option<String>,
    pub cache_mode: String,
    pub cache_ttl_seconds: String,
    pub cache_partition_by_credential: Option<String>,
    /// Only admins' forms have this field; absent, the directory stays as it is.
    pub cache_fixtures_dir: Option<String>,
    /// Checkbox (Configure only, with the cache fields): requests go to the request log.
    pub log_requests: Option<String>,
    /// Checkbox: the built-in emulator answers instead of an upstream.
    pub use_emulator: Option<String>,
    pub emulator_ttft_ms: String,
    pub emulator_tokens_per_second: String,
    /// Configure only: the daily spend cap in USD, empty for none; absent, it stays as it is.
    pub daily_spend_cap_usd: Option<String>,
}

impl ProxyForm {
    pub fn from_spec(spec: &ProxySpec) -> Self {
        ProxyForm {
            name: spec.name.clone(),
            provider: spec.provider.id().to_owned(),
            port: spec.port.to_string(),
            description: spec.description.clone(),
            tags: spec.tags.join(", "),
            upstream_url: spec
                .upstream_url
                .clone()
                .filter(|_| !spec.emulated())
                .unwrap_or_default(),
            cache_fields: Some("1".into()),
            log_requests: spec.log_requests.then(|| "on".into()),
            cache_enabled: spec.cache.enabled.then(|| "on".into()),
            cache_mode: spec.cache.mode.as_str().to_owned(),
            cache_ttl_seconds: spec
                .cache
                .ttl_seconds
                .map(|t| t.to_string())
                .unwrap_or_default(),
            cache_partition_by_credential: spec.cache.partition_by_credential.then(|| "on".into()),
            cache_fixtures_dir: Some(
                spec.cache
                    .fixtures_dir
                    .as_ref()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default(),
            ),
            use_emulator: spec.emulated().then(|| "on".into()),
            emulator_ttft_ms: spec.emulator.ttft_ms.to_string(),
            emulator_tokens_per_second: spec.emulator.tokens_per_second.to_string(),
            daily_spend_cap_usd: Some(
                spec.daily_spend_cap_usd
                    .map(|cap| cap.to_string())
                    .unwrap_or_default(),
            ),
        }
    }

    pub fn uses_emulator(&self) -> bool {
        self.use_emulator.is_some()
    }

    pub fn cache_enabled(&self) -> bool {
        self.cache_enabled.is_some()
    }

    pub fn cache_partitioned(&self) -> bool {
        self.cache_partition_by_credential.is_some()
    }

    pub fn cache_mode_is(&self, mode: &str) -> bool {
        self.cache_mode == mode
    }

    /// For an edit the provider is fixed, so it is left out. A TTL that is not a whole number
    /// becomes 0, which validation rejects with its own message.
    pub fn to_input(&self, include_provider: bool) -> ProxyInput {
        let cache = self.cache_fields.as_ref().map(|_| CacheInput {
            enabled: Some(self.cache_enabled()),
            mode: Some(self.cache_mode.clone()),
            ttl_seconds: match self.cache_ttl_seconds.trim() {
                "" => None,
                text => Some(text.parse().unwrap_or(0)),
            },
            partition_by_credential: Some(self.cache_partitioned()),
            ttl_explicit: true,
            // Empty unbinds the directory; a form without the field leaves it alone.
            fixtures_dir: self
                .cache_fixtures_dir
                .as_deref()
                .map(str::trim)
                .map(|dir| (!dir.is_empty()).then(|| dir.to_owned())),
            ..CacheInput::default()
        });
        // Empty keeps the current value (or the default); text that is not a whole number
        // becomes -1, which validation rejects with its own message.
        let number = |text: &str| match text.trim() {
            "" => None,
            text => Some(text.parse().unwrap_or(-1)),
        };
        // Latency fields of an unticked emulator are hidden, so they are not checked either.
        let emulator = self.uses_emulator().then(|| EmulatorInput {
            ttft_ms: number(&self.emulator_ttft_ms),
            tokens_per_second: number(&self.emulator_tokens_per_second),
        });
        let upstream_url = if self.uses_emulator() {
            emulator::UPSTREAM.to_owned()
        } else {
            self.upstream_url.clone()
        };
        // Empty removes the cap; a leading `$` is fine; text that is not a number becomes -1,
        // which validation rejects with its own message.
        let daily_spend_cap_usd = self.daily_spend_cap_usd.as_deref().map(|text| {
            match text.trim().trim_start_matches('$').trim() {
                "" => None,
                amount => Some(amount.parse().unwrap_or(-1.0)),
            }
        });
        ProxyInput {
            name: Some(self.name.clone()),
            provider: include_provider.then(|| self.provider.clone()),
            port: Some(PortInput::Text(self.port.clone())),
            description: Some(self.description.clone()),
            tags: Some(TagsInput::Text(self.tags.clone())),
            upstream_url: Some(upstream_url),
            log_requests: self
                .cache_fields
                .as_ref()
                .map(|_| self.log_requests.is_some()),
            cache,
            emulator,
            daily_spend_cap_usd,
            ..ProxyInput::default()
        }
    }
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

#[derive(Template)]
#[template(path = "proxies/_port_check.html")]
pub struct PortCheck {
    pub message: Option<String>,
    pub warning: bool,
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

#[derive(Template)]
#[template(path = "proxies/_edit_modal.html")]
pub struct EditModal {
    pub id: i32,
    pub provider_name: &'static str,
    pub running: bool,
    pub form: ProxyForm,
    pub errors: FormErrors,
    /// Admins also see the fixtures directory, a path on the server.
    pub is_admin: bool,
    /// The config file that declares the proxy, whose settings win at the next start.
    pub declared_in: Option<String>,
}

impl EditModal {
    fn new(snapshot: &ProxySnapshot, caller: &Caller, form: ProxyForm, errors: FormErrors) -> Self {
        let spec = &snapshot.spec;
        EditModal {
            id: spec.id.0,
            provider_name: spec.provider.name(),
            running: snapshot.status.is_active(),
            form,
            errors,
            is_admin: caller.is_admin(),
            declared_in: spec
                .declared_in
                .as_ref()
                .map(|file| file.display().to_string()),
        }
    }

    /// Errors of fields this form does not show next to a field (the fixtures directory is
    /// one for members: an admin set it, but a mode a member picks may not fit it).
    pub fn general_errors(&self) -> Vec<&str> {
        let shown: &[&str] = if self.is_admin {
            &[
                "cache.mode",
                "cache.ttl_seconds",
                "cache.fixtures_dir",
                "daily_spend_cap_usd",
            ]
        } else {
            &["cache.mode", "cache.ttl_seconds", "daily_spend_cap_usd"]
        };
        self.errors.general_except(shown)
    }
}

pub async fn edit_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let snapshot = state.registry.get_for(ProxyId(*id), access(&req)?)?;
    let form = ProxyForm::from_spec(&snapshot.spec);
    let modal = EditModal::new(&snapshot, &caller, form, FormErrors::default());
    modal_response(&req, &state, StatusCode::OK, &modal)
}

pub async fn update_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
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
            let modal = EditModal::new(&snapshot, &caller, form, errors.into());
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

#[derive(Template)]
#[template(path = "proxies/delete.html")]
pub struct ConfirmDeletePage {
    pub card: ProxyCard,
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

#[derive(Template)]
#[template(path = "proxies/_failures_modal.html")]
pub struct FailuresModal {
    pub card: ProxyCard,
    pub form: FailureForm,
    pub errors: FormErrors,
    pub statuses: [u16; 11],
    pub outcomes: &'static [OutcomeChoice],
    pub notice: Option<String>,
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
        outcomes: &OUTCOMES,
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

/// The script editor's add, remove and move-up buttons: the form comes back edited, unsaved.
pub async fn edit_script_rows(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    fields: web::Form<HashMap<String, String>>,
) -> PageResult {
    let id = ProxyId(*id);
    state.registry.get_for(id, access(&req)?)?;
    let mut fields = fields.into_inner();
    let action = fields
        .remove("script_action")
        .as_deref()
        .and_then(RowAction::parse);
    let mut form = FailureForm::from_fields(fields);
    let notice = match action {
        Some(action) => {
            form.edit_rows(action);
            "Not saved yet: Save puts the script in force."
        }
        None => "That button did nothing: the page may be out of date.",
    };
    let modal = failures_modal(
        card(&req, &state.registry, id)?,
        form,
        FormErrors::default(),
        Some(notice.to_owned()),
    );
    modal_response(&req, &state, StatusCode::OK, &modal)
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
