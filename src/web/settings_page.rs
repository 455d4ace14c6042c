//! The Settings page: your account and API tokens; for admins also the accounts of others
//! (disable, enable, delete, reset a password) and their API tokens, the settings of this
//! Rubberduck and facts about it.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;

use super::AppState;
use super::format;
use super::pages::{FormErrors, PageResult, html, see_other};
use crate::auth::{AuthError, Caller, SignOut, TokenInfo, User};
use crate::ids::UserId;
use crate::settings::SettingsForm;

/// A secret shown once: a new API token or a generated password.
pub struct Revealed {
    pub label: String,
    pub value: String,
}

pub struct SystemInfo {
    pub version: &'static str,
    pub uptime: String,
    pub data_dir: String,
    pub database_bytes: String,
    pub cache: String,
    /// The whole cache against its budgets, for the admin's settings form.
    pub cache_usage: String,
    pub port_range: String,
    pub stop_timeout_seconds: u64,
}

#[derive(Template)]
#[template(path = "settings/index.html")]
pub struct SettingsPage {
    pub me: User,
    pub is_admin: bool,
    pub tokens: Vec<TokenInfo>,
    pub users: Vec<User>,
    /// For admins: the API tokens of every other user.
    pub others_tokens: Vec<TokenInfo>,
    pub form: SettingsForm,
    /// Errors of whichever form was just submitted, by field.
    pub errors: FormErrors,
    /// Which form `errors` belong to.
    pub failed_form: &'static str,
    pub notice: Option<String>,
    pub revealed: Option<Revealed>,
    pub info: SystemInfo,
}

impl SettingsPage {
    pub fn error(&self, form: &str, field: &str) -> Option<&str> {
        (self.failed_form == form)
            .then(|| self.errors.get(field))
            .flatten()
    }
}

/// What a settings action shows afterwards.
#[derive(Default)]
struct Outcome {
    notice: Option<String>,
    revealed: Option<Revealed>,
    failed_form: &'static str,
    errors: FormErrors,
    form: Option<SettingsForm>,
}

impl Outcome {
    fn failed(form: &'static str, error: AuthError) -> Result<Self, AuthError> {
        match error {
            AuthError::Invalid(field) => Ok(Outcome {
                failed_form: form,
                errors: vec![field].into(),
                ..Outcome::default()
            }),
            other => Err(other),
        }
    }
}

async fn page(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    outcome: Outcome,
) -> PageResult {
    let is_admin = caller.is_admin();
    let (users, others_tokens) = if is_admin {
        let mut tokens = state.accounts.all_tokens(caller).await?;
        tokens.retain(|token| token.owner_id != caller.user.id);
        (state.accounts.users(caller).await?, tokens)
    } else {
        (Vec::new(), Vec::new())
    };
    let status = if outcome.failed_form.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    // A secret shown once must not stay in a browser's or proxy's cache (nor come back with
    // the Back button).
    let one_time = outcome.revealed.is_some();
    let page = SettingsPage {
        me: caller.user.clone(),
        is_admin,
        tokens: state.accounts.tokens(caller).await?,
        users,
        others_tokens,
        form: outcome
            .form
            .unwrap_or_else(|| SettingsForm::from_settings(&state.settings.get())),
        errors: outcome.errors,
        failed_form: outcome.failed_form,
        notice: outcome.notice,
        revealed: outcome.revealed,
        info: system_info(state, caller),
    };
    let mut response = html(req, status, &page)?;
    if one_time {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

fn system_info(state: &AppState, caller: &Caller) -> SystemInfo {
    let database = state.data_dir.join(crate::db::DATABASE_FILE);
    let database_bytes = std::fs::metadata(&database).map_or(0, |m| m.len());
    let (entries, bytes) = state
        .registry
        .list_for(caller.access())
        .iter()
        .fold((0, 0), |(n, b), p| (n + p.cache.entries, b + p.cache.bytes));
    let uptime = state.started_at.elapsed().as_secs();
    let settings = state.registry.settings();
    let usage = state.cache.usage();
    let budget = state.cache.budget();
    let limit = |bytes: u64| {
        if bytes == 0 {
            "no limit".to_owned()
        } else {
            format::bytes(bytes)
        }
    };
    SystemInfo {
        cache_usage: format!(
            "Now stored: {} entries, {} (total budget: {}; per proxy: {}). {} evicted since the start.",
            usage.entries,
            format::bytes(usage.bytes),
            limit(budget.total_bytes),
            limit(budget.per_proxy_bytes),
            usage.evictions
        ),
        version: crate::VERSION,
        uptime: format::uptime(uptime),
        data_dir: state.data_dir.display().to_string(),
        database_bytes: format::bytes(database_bytes),
        cache: format!("{entries} entries, {}", format::bytes(bytes)),
        port_range: format!(
            "{}–{}",
            settings.port_range.start(),
            settings.port_range.end()
        ),
        stop_timeout_seconds: settings.graceful_stop_timeout.as_secs(),
    }
}

pub async fn settings(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> PageResult {
    page(&req, &state, &caller, Outcome::default()).await
}

pub async fn save_settings(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<SettingsForm>,
) -> PageResult {
    if !caller.is_admin() {
        return Err(AuthError::Forbidden.into());
    }
    let mut form = form.into_inner();
    form.keep_missing(&state.settings.get());
    let outcome = match form.validate() {
        Ok(settings) => {
            let host_changed = settings.proxy_host != state.settings.get().proxy_host;
            let budget = settings.cache_budget();
            state.settings.save(settings).await?;
            // A smaller budget evicts now, not at the next write.
            state.cache.apply_budget(budget).await?;
            log::info!("{} changed the settings", caller.user.email);
            Outcome {
                notice: Some(if host_changed {
                    "Saved. The new proxy bind host applies to each proxy when it next starts."
                        .to_owned()
                } else {
                    "Saved.".to_owned()
                }),
                ..Outcome::default()
            }
        }
        Err(errors) => Outcome {
            failed_form: "settings",
            errors: errors.into(),
            form: Some(form),
            ..Outcome::default()
        },
    };
    page(&req, &state, &caller, outcome).await
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
    /// The checkbox "Sign out everywhere and revoke my API tokens".
    #[serde(default)]
    sign_out_everywhere: Option<String>,
    /// Set by the form that offers the checkbox: without it (a form from before, a script) an
    /// unticked box cannot be told from a missing one, and the default — yes — applies.
    #[serde(default)]
    sign_out_offered: Option<String>,
}

impl PasswordForm {
    fn sign_out(&self) -> SignOut {
        if self.sign_out_everywhere.is_some() || self.sign_out_offered.is_none() {
            SignOut::Everywhere
        } else {
            SignOut::OtherSessions
        }
    }
}

/// Changing your password ends your sessions, this one included, and revokes your API tokens:
/// sign in again. Unticking "sign out everywhere" keeps this session and the tokens (other
/// sessions still end).
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<PasswordForm>,
) -> PageResult {
    match state
        .accounts
        .change_password(
            &caller,
            &form.current_password,
            &form.password,
            &form.confirm_password,
            form.sign_out(),
        )
        .await
    {
        Ok(()) if form.sign_out() == SignOut::Everywhere => {
            Ok(see_other("/login?next=%2Fsettings"))
        }
        Ok(()) => {
            let outcome = Outcome {
                notice: Some(
                    "Password changed. Your other sessions have ended; this one and your API tokens still work."
                        .to_owned(),
                ),
                ..Outcome::default()
            };
            page(&req, &state, &caller, outcome).await
        }
        Err(error) => {
            let outcome = Outcome::failed("password", error)?;
            page(&req, &state, &caller, outcome).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<TokenForm>,
) -> PageResult {
    let outcome = match state.accounts.create_token(&caller, &form.name).await {
        Ok(token) => Outcome {
            revealed: Some(Revealed {
                label: format!(
                    "Your new API token “{}”. Copy it now: it is not shown again.",
                    form.name.trim()
                ),
                value: token,
            }),
            ..Outcome::default()
        },
        Err(error) => Outcome::failed("token", error)?,
    };
    page(&req, &state, &caller, outcome).await
}

pub async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    state.accounts.revoke_token(&caller, *id).await?;
    let outcome = Outcome {
        notice: Some("Token revoked: it no longer works.".to_owned()),
        ..Outcome::default()
    };
    page(&req, &state, &caller, outcome).await
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<UserForm>,
) -> PageResult {
    let outcome = match state
        .accounts
        .create_user(&caller, &form.email, &form.role, Some(&form.password))
        .await
    {
        Ok((user, password)) => Outcome {
            revealed: Some(Revealed {
                label: format!(
                    "Account {} created. Pass on this password; it is not shown again.",
                    user.email
                ),
                value: password,
            }),
            ..Outcome::default()
        },
        Err(error) => Outcome::failed("user", error)?,
    };
    page(&req, &state, &caller, outcome).await
}

pub async fn reset_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let (user, password) = state.accounts.reset_password(&caller, UserId(*id)).await?;
    let outcome = Outcome {
        revealed: Some(Revealed {
            label: format!(
                "New password of {}; their sessions have ended and their API tokens are revoked. It is not shown again.",
                user.email
            ),
            value: password,
        }),
        ..Outcome::default()
    };
    page(&req, &state, &caller, outcome).await
}

/// Disabling an account ends its sessions and tokens and stops its proxies at once.
pub async fn disable_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let outcome = match state.accounts.disable_user(&caller, UserId(*id)).await {
        Ok(user) => {
            let stopped = super::stop_proxies_of(&state, user.id).await?;
            Outcome {
                notice: Some(format!(
                    "{} is disabled: their sessions have ended, their API tokens are revoked and {stopped} running {} stopped.",
                    user.email,
                    if stopped == 1 {
                        "proxy was"
                    } else {
                        "proxies were"
                    }
                )),
                ..Outcome::default()
            }
        }
        Err(error) => Outcome::failed("users", error)?,
    };
    page(&req, &state, &caller, outcome).await
}

pub async fn enable_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let user = state.accounts.enable_user(&caller, UserId(*id)).await?;
    let outcome = Outcome {
        notice: Some(format!(
            "{} may sign in again. Their proxies stay stopped until started.",
            user.email
        )),
        ..Outcome::default()
    };
    page(&req, &state, &caller, outcome).await
}

#[derive(Template)]
#[template(path = "settings/delete_user.html")]
pub struct DeleteUserPage {
    pub user: User,
    pub proxies: usize,
}

/// `GET /settings/users/{id}/delete`: what deleting the account does, and a button to do it.
pub async fn confirm_delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let user = state.accounts.user(&caller, UserId(*id)).await?;
    let proxies = state.registry.count_owned_by(user.id);
    html(&req, StatusCode::OK, &DeleteUserPage { user, proxies })
}

pub async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> PageResult {
    let outcome = match state.accounts.delete_user(&caller, UserId(*id)).await {
        Ok(user) => {
            super::stop_proxies_of(&state, user.id).await?;
            Outcome {
                notice: Some(format!(
                    "The account {} is deleted. Its proxies are stopped and stay, with their logs, for admins.",
                    user.email
                )),
                ..Outcome::default()
            }
        }
        Err(error) => Outcome::failed("users", error)?,
    };
    page(&req, &state, &caller, outcome).await
}
