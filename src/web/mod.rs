//! The admin server: HTML pages (Askama + HTMX) and the JSON API.

mod account;
mod accounts_api;
mod api;
mod cache_api;
mod cache_page;
mod cache_view;
mod cards;
mod dashboard;
mod error;
mod events;
mod failures;
mod fixtures_api;
mod format;
mod guard;
mod logs_api;
mod logs_page;
mod metrics;
mod pages;
mod proxies_page;
mod proxy_host;
mod script_rows;
mod settings_page;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web;
use tokio::sync::watch;

use crate::auth::oidc::Oidc;
use crate::auth::{Access, Accounts, Caller};
use crate::cache::ResponseCache;
use crate::db::DbPool;
use crate::ids::UserId;
use crate::registry::{ProxyRegistry, RegistryError};
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use crate::validation::FieldError;

pub use error::{ApiError, PageError};
pub use guard::{authenticate, security_headers};

pub struct AppState {
    pub db: DbPool,
    pub accounts: Arc<Accounts>,
    /// Single sign-on, when configured.
    pub oidc: Option<Arc<Oidc>>,
    pub settings: Arc<Settings>,
    pub data_dir: PathBuf,
    pub registry: Arc<ProxyRegistry>,
    /// Read-only here: the cache's numbers; changes that need authorization go through the
    /// registry.
    pub cache: Arc<ResponseCache>,
    pub telemetry: Arc<Telemetry>,
    pub started_at: Instant,
    /// Flips to true when the process shuts down, so endless streams (SSE) end and never hold up
    /// a graceful stop.
    pub shutting_down: watch::Receiver<bool>,
}

/// The proxy ids whose logs and numbers `caller` may see, deleted ones included; `None` means
/// all (an admin).
pub(crate) fn visible_proxy_ids(state: &AppState, caller: &Caller) -> Option<Vec<i32>> {
    match caller.access() {
        Access::All => None,
        access => {
            let registry = &state.registry;
            let live = registry.list_for(access).into_iter().map(|p| p.spec.id.0);
            let deleted = registry.deleted_for(access).into_iter().map(|p| p.id.0);
            Some(live.chain(deleted).collect())
        }
    }
}

/// A member may own at most the configured number of proxies; admins are not limited.
pub(crate) fn check_proxy_quota(state: &AppState, caller: &Caller) -> Result<(), FieldError> {
    let limit = state.settings.get().max_proxies_per_user;
    if limit == 0 || caller.is_admin() {
        return Ok(());
    }
    if state.registry.count_owned_by(caller.user.id) >= limit as usize {
        return Err(FieldError::new(
            "name",
            format!(
                "You already have {limit} proxies, the most a user may have here. Delete one first, or ask an admin."
            ),
        ));
    }
    Ok(())
}

/// Stops every proxy of `owner` at once (in-flight requests are cut): a disabled or deleted
/// account's proxies must stop serving with its sessions and tokens. They stay, stopped, with
/// their logs, for admins to see and manage; only an admin can start them again (the owner
/// cannot sign in). Returns how many were running.
pub(crate) async fn stop_proxies_of(
    state: &AppState,
    owner: UserId,
) -> Result<usize, RegistryError> {
    let mut were_running = 0;
    for proxy in state.registry.list_for(Access::OwnedBy(owner)) {
        if proxy.status.is_active() {
            were_running += 1;
        }
        // Stopped ones too: a proxy in error still wants to run, and would at the next start.
        state
            .registry
            .stop(proxy.spec.id, false, Access::All)
            .await?;
    }
    Ok(were_running)
}

/// Every URL of the admin server, in one place.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(api::json_config())
        .app_data(api::query_config())
        .app_data(pages::form_config())
        .route("/healthz", web::get().to(api::healthz))
        .route("/metrics", web::get().to(metrics::prometheus))
        .service(
            web::scope("/api")
                .route("/providers", web::get().to(api::providers))
                .route("/proxies", web::get().to(api::list_proxies))
                .route("/proxies", web::post().to(api::create_proxy))
                .route("/proxies/{id:\\d+}", web::get().to(api::get_proxy))
                .route("/proxies/{id:\\d+}", web::patch().to(api::update_proxy))
                .route("/proxies/{id:\\d+}", web::delete().to(api::delete_proxy))
                .route("/proxies/{id:\\d+}/snippets", web::get().to(api::snippets))
                .route("/proxies/{id:\\d+}/start", web::post().to(api::start_proxy))
                .route("/proxies/{id:\\d+}/stop", web::post().to(api::stop_proxy))
                .route(
                    "/proxies/{id:\\d+}/restart",
                    web::post().to(api::restart_proxy),
                )
                .route("/proxies/{id:\\d+}/cache", web::get().to(api::cache_info))
                .route(
                    "/proxies/{id:\\d+}/cache",
                    web::delete().to(api::clear_cache),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/entries",
                    web::get().to(cache_api::list),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/entries/{key}",
                    web::get().to(cache_api::entry),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/entries/{key}",
                    web::delete().to(cache_api::delete),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/export",
                    web::get().to(fixtures_api::export),
                )
                .service(
                    web::resource("/proxies/{id:\\d+}/cache/import")
                        .app_data(web::PayloadConfig::new(fixtures_api::MAX_UPLOAD_BYTES))
                        .route(web::post().to(fixtures_api::import)),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/reload",
                    web::post().to(fixtures_api::reload),
                )
                .route(
                    "/proxies/{id:\\d+}/cache/explain",
                    web::post().to(fixtures_api::explain),
                )
                .route(
                    "/proxies/{id:\\d+}/failure-config",
                    web::get().to(api::failure_config),
                )
                .route(
                    "/proxies/{id:\\d+}/scenarios/{scenario}/reset",
                    web::post().to(api::reset_scenario),
                )
                .route(
                    "/proxies/{id:\\d+}/failure-config",
                    web::put().to(api::replace_failure_config),
                )
                .route("/logs", web::get().to(logs_api::list))
                .route("/logs", web::delete().to(logs_api::purge))
                .route("/logs/export", web::get().to(logs_api::export))
                .route("/metrics", web::get().to(metrics::api_metrics))
                .route("/users", web::get().to(accounts_api::list_users))
                .route(
                    "/users/{id:\\d+}/disable",
                    web::post().to(accounts_api::disable_user),
                )
                .route(
                    "/users/{id:\\d+}/enable",
                    web::post().to(accounts_api::enable_user),
                )
                .route(
                    "/users/{id:\\d+}",
                    web::delete().to(accounts_api::delete_user),
                )
                .route("/tokens", web::get().to(accounts_api::list_tokens))
                .route(
                    "/tokens/{id:\\d+}",
                    web::delete().to(accounts_api::revoke_token),
                )
                .default_service(web::to(api::not_found)),
        )
        .route("/", web::get().to(dashboard::page))
        .route("/dashboard/stats", web::get().to(dashboard::stats_fragment))
        .route("/proxies", web::get().to(proxies_page::proxies))
        .route("/proxies", web::post().to(proxies_page::create_proxy))
        .route("/proxies/new", web::get().to(proxies_page::new_proxy))
        .route("/proxies/events", web::get().to(events::proxy_events))
        .route(
            "/proxies/port-check",
            web::get().to(proxies_page::port_check),
        )
        .route(
            "/proxies/{id:\\d+}",
            web::get().to(proxies_page::proxy_card),
        )
        .route(
            "/proxies/{id:\\d+}",
            web::post().to(proxies_page::update_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/edit",
            web::get().to(proxies_page::edit_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/start",
            web::post().to(proxies_page::start_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/stop",
            web::post().to(proxies_page::stop_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/restart",
            web::post().to(proxies_page::restart_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/duplicate",
            web::post().to(proxies_page::duplicate_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/delete",
            web::get().to(proxies_page::confirm_delete),
        )
        .route(
            "/proxies/{id:\\d+}/delete",
            web::post().to(proxies_page::delete_proxy),
        )
        .route(
            "/proxies/{id:\\d+}/cache",
            web::get().to(cache_page::cache_info),
        )
        .route(
            "/proxies/{id:\\d+}/cache/clear",
            web::post().to(cache_page::clear_cache),
        )
        .route(
            "/proxies/{id:\\d+}/cache/entries",
            web::get().to(cache_view::entries),
        )
        .route(
            "/proxies/{id:\\d+}/cache/entries/{key}",
            web::get().to(cache_view::entry),
        )
        .route(
            "/proxies/{id:\\d+}/cache/entries/{key}/delete",
            web::post().to(cache_view::delete),
        )
        .route(
            "/proxies/{id:\\d+}/cache/export",
            web::get().to(cache_page::export),
        )
        .route(
            "/proxies/{id:\\d+}/cache/import",
            web::post().to(cache_page::import),
        )
        .route(
            "/proxies/{id:\\d+}/cache/reload",
            web::post().to(cache_page::reload),
        )
        .route(
            "/proxies/{id:\\d+}/failures",
            web::get().to(proxies_page::failure_settings),
        )
        .route(
            "/proxies/{id:\\d+}/failures",
            web::post().to(proxies_page::update_failures),
        )
        .route(
            "/proxies/{id:\\d+}/failures/reset",
            web::post().to(proxies_page::reset_failures),
        )
        .route(
            "/proxies/{id:\\d+}/failures/rows",
            web::post().to(proxies_page::edit_script_rows),
        )
        .route("/ui/close-modal", web::get().to(pages::close_modal))
        .route("/logs", web::get().to(logs_page::logs))
        .route("/logs/events", web::get().to(logs_page::log_events))
        .route("/logs/purge", web::get().to(logs_page::purge_page))
        .route("/logs/purge", web::post().to(logs_page::purge))
        .route("/login", web::get().to(account::login_page))
        .route("/login", web::post().to(account::login))
        .route("/login/oidc", web::get().to(account::oidc_start))
        .route(
            "/login/oidc/callback",
            web::get().to(account::oidc_callback),
        )
        .route("/logout", web::post().to(account::logout))
        .route("/register", web::get().to(account::register_page))
        .route("/register", web::post().to(account::register))
        .route("/settings", web::get().to(settings_page::settings))
        .route("/settings", web::post().to(settings_page::save_settings))
        .route(
            "/settings/password",
            web::post().to(settings_page::change_password),
        )
        .route(
            "/settings/tokens",
            web::post().to(settings_page::create_token),
        )
        .route(
            "/settings/tokens/{id:\\d+}/revoke",
            web::post().to(settings_page::revoke_token),
        )
        .route(
            "/settings/users",
            web::post().to(settings_page::create_user),
        )
        .route(
            "/settings/users/{id:\\d+}/reset-password",
            web::post().to(settings_page::reset_password),
        )
        .route(
            "/settings/users/{id:\\d+}/disable",
            web::post().to(settings_page::disable_user),
        )
        .route(
            "/settings/users/{id:\\d+}/enable",
            web::post().to(settings_page::enable_user),
        )
        .route(
            "/settings/users/{id:\\d+}/delete",
            web::get().to(settings_page::confirm_delete_user),
        )
        .route(
            "/settings/users/{id:\\d+}/delete",
            web::post().to(settings_page::delete_user),
        )
        .service(actix_files::Files::new("/static", static_dir()).prefer_utf8(true))
        .default_service(web::to(pages::not_found));
}

/// Static files ship next to the binary's sources; `RUBBERDUCK_STATIC_DIR` overrides for
/// installs that move the binary.
fn static_dir() -> std::path::PathBuf {
    std::env::var_os("RUBBERDUCK_STATIC_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"))
}
