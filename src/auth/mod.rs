//! Accounts: who may use the dashboard and the API, and what each of them may see. Members see
//! and manage their own proxies; admins see everything and manage accounts.

pub mod oidc;
pub mod password;
pub mod secret;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use serde::Serialize;

use crate::db::accounts::{Lockout, PasswordChange};
use crate::db::models::{ApiTokenRow, NewApiTokenRow, NewSessionRow, NewUserRow, UserRow};
use crate::db::{self, DbError, DbPool};
use crate::ids::UserId;
use crate::settings::Settings;
use crate::validation::FieldError;
use throttle::LoginThrottle;

/// How often a session's or token's "last seen" time is written; reads in between are free.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// The name of the API token `RUBBERDUCK_BOOTSTRAP_TOKEN` registers.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap (RUBBERDUCK_BOOTSTRAP_TOKEN)";
const MAX_TOKEN_NAME_CHARS: usize = 60;
/// `RUBBERDUCK_BOOTSTRAP_TOKEN` is a full API token for the first admin: no shorter than this.
pub const MIN_BOOTSTRAP_TOKEN_CHARS: usize = 16;
const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub created_at: chrono::DateTime<Utc>,
    /// A disabled account cannot sign in, and its sessions and tokens do not work.
    pub disabled: bool,
}

impl TryFrom<UserRow> for User {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<Self, DbError> {
        Ok(User {
            id: UserId(row.id),
            role: Role::parse(&row.role)
                .ok_or_else(|| DbError::Corrupt(format!("user {}: unknown role", row.id)))?,
            email: row.email,
            created_at: row.created_at.and_utc(),
            disabled: row.disabled_at.is_some() || row.deleted_at.is_some(),
        })
    }
}

/// Which proxies (and their logs and numbers) a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    All,
    OwnedBy(UserId),
}

impl Access {
    pub fn allows(self, owner: UserId) -> bool {
        match self {
            Access::All => true,
            Access::OwnedBy(user) => user == owner,
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A browser session; state-changing requests must echo its CSRF token.
    Session { id: i32, csrf_token: String },
    /// An API token in `Authorization: Bearer`; browsers never send one on their own, so
    /// cross-site forgery cannot use it.
    Token,
}

/// The secret a request presented (its session cookie or its API token), which a long-lived
/// response keeps to ask now and then whether it still works. Never printed.
#[derive(Clone)]
pub enum Presented {
    Session(String),
    Bearer(String),
}

/// The signed-in user behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: Credential,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    pub fn access(&self) -> Access {
        if self.is_admin() {
            Access::All
        } else {
            Access::OwnedBy(self.user.id)
        }
    }

    pub fn csrf_token(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { csrf_token, .. } => Some(csrf_token),
            Credential::Token => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Wrong email or password.")]
    WrongCredentials,
    #[error("Too many failed sign-ins; try again in {} minutes.", .0.as_secs().div_ceil(60))]
    Throttled(Duration),
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("Only an admin can do that.")]
    Forbidden,
    #[error("This account is disabled; ask an admin to enable it.")]
    Disabled,
    #[error(
        "There is no Rubberduck account for {0}; ask an admin to create one, then sign in again."
    )]
    NoAccount(String),
    /// A secret from the environment that is too easy to guess; the value is never shown.
    #[error("{variable} is too weak: {reason} {advice}")]
    WeakBootstrap {
        variable: &'static str,
        reason: String,
        advice: &'static str,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error(transparent)]
    Database(#[from] DbError),
}

/// A new browser session: the secret goes into the cookie, only its digest into the database.
pub struct NewSession {
    pub cookie_secret: String,
    pub user: User,
}

/// A token as its owner (or an admin) sees it in Settings (the secret itself is shown once, at
/// creation).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: i32,
    pub name: String,
    pub prefix: String,
    pub created_at: chrono::DateTime<Utc>,
    pub last_used_at: Option<chrono::DateTime<Utc>>,
    pub owner_id: UserId,
    pub owner_email: String,
}

impl TokenInfo {
    fn new(row: ApiTokenRow, owner_email: String) -> TokenInfo {
        TokenInfo {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used_at.map(|at| at.and_utc()),
            owner_id: UserId(row.user_id),
            owner_email,
        }
    }
}

/// What a password change ends besides the old password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOut {
    /// Every session, the caller's too, and every API token (the default).
    Everywhere,
    /// The other sessions; the caller's session and the API tokens keep working.
    OtherSessions,
}

/// What the first start needs from the environment.
#[derive(Debug, Clone, Default)]
pub struct FirstAdmin {
    pub email: String,
    pub password: Option<String>,
    pub bootstrap_token: Option<String>,
}

pub struct Accounts {
    db: DbPool,
    settings: Arc<Settings>,
    throttle: LoginThrottle,
}

impl Accounts {
    pub fn new(db: DbPool, settings: Arc<Settings>) -> Self {
        Accounts {
            db,
            settings,
            throttle: LoginThrottle::default(),
        }
    }

    /// On the very first start, creates the admin (printing a generated password once); gives
    /// proxies from before accounts to the first admin; registers the bootstrap token.
    pub async fn bootstrap(&self, first: FirstAdmin) -> Result<UserId, AuthError> {
        let email = normalize_email(&first.email).map_err(AuthError::Invalid)?;
        check_bootstrap_secrets(&first, &email)?;
        let existing = db::run(&self.db, db::accounts::first_admin).await?;
        let admin = match existing {
            Some(row) => User::try_from(row)?,
            None => {
                let (password, generated) = match first.password {
                    Some(password) => (password, false),
                    None => (password::generate(), true),
                };
                let user = self.insert_user(&email, &password, Role::Admin).await?;
                if generated {
                    log::warn!(
                        "First start: sign in as {email} with the password {password} — it is shown only this once; change it under Settings → Account."
                    );
                } else {
                    log::info!(
                        "First start: created the admin {email} with the password from RUBBERDUCK_ADMIN_PASSWORD."
                    );
                }
                user
            }
        };
        let owner = admin.id.0;
        let adopted = db::run(&self.db, move |conn| {
            db::accounts::adopt_ownerless_proxies(conn, owner)
        })
        .await?;
        if adopted > 0 {
            log::info!(
                "gave {adopted} proxies from before accounts to {}",
                admin.email
            );
        }
        if let Some(token) = first.bootstrap_token.filter(|t| !t.is_empty()) {
            let digest = secret::digest(&token);
            let prefix = token_prefix(&token);
            db::run(&self.db, move |conn| {
                db::accounts::replace_named_token(
                    conn,
                    &NewApiTokenRow {
                        user_id: owner,
                        name: BOOTSTRAP_TOKEN_NAME,
                        token_hash: &digest,
                        prefix: &prefix,
                        created_at: now(),
                    },
                )
            })
            .await?;
        }
        Ok(admin.id)
    }

    async fn insert_user(
        &self,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<User, AuthError> {
        let hash = hash_blocking(password.to_owned()).await?;
        let email = email.to_owned();
        let row = db::run(&self.db, move |conn| {
            db::accounts::insert_user(
                conn,
                &NewUserRow {
                    email: &email,
                    password_hash: &hash,
                    role: role.as_str(),
                    created_at: now(),
                },
            )
        })
        .await?;
        Ok(User::try_from(row)?)
    }

    /// Checks an email and password; on success opens a session.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        address: &str,
    ) -> Result<NewSession, AuthError> {
        let email = email.trim().to_owned();
        // Reserved before the password is verified: parallel guesses all count.
        let attempt = self
            .throttle
            .reserve(&email, address)
            .map_err(AuthError::Throttled)?;
        let lookup = email.clone();
        let row = db::run(&self.db, move |conn| {
            db::accounts::user_by_email(conn, &lookup)
        })
        .await?;
        let guess = password.to_owned();
        let verified = actix_web::web::block(move || match &row {
            Some(row) => password::verify(&guess, &row.password_hash).then(|| row.clone()),
            None => {
                password::verify_nothing(&guess);
                None
            }
        })
        .await
        .map_err(DbError::from)?;
        // A dropped reservation counts as a failure.
        let Some(row) = verified else {
            return Err(AuthError::WrongCredentials);
        };
        attempt.succeeded();
        let user = User::try_from(row)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let cookie_secret = self.open_session(user.id).await?;
        Ok(NewSession {
            cookie_secret,
            user,
        })
    }

    /// Signs in someone an identity provider vouched for (see `oidc`): the account with that
    /// email, or with `create_if_unknown` a new member account. Accounts created this way get
    /// a random password nobody knows, so they sign in through the provider until an admin
    /// resets their password.
    pub async fn sign_in_vouched(
        &self,
        email: &str,
        create_if_unknown: bool,
    ) -> Result<NewSession, AuthError> {
        let lookup = email.to_owned();
        let row = db::run(&self.db, move |conn| {
            db::accounts::user_by_email(conn, &lookup)
        })
        .await?;
        let user = match row {
            Some(row) => User::try_from(row)?,
            None if create_if_unknown => {
                let unknowable = secret::generate("", 32);
                match self.insert_user(email, &unknowable, Role::Member).await {
                    Ok(user) => {
                        log::info!(
                            "created the member account {email} at its first single sign-on"
                        );
                        user
                    }
                    // Two first sign-ins at once: the other one created the account.
                    Err(error) => {
                        let lookup = email.to_owned();
                        let row = db::run(&self.db, move |conn| {
                            db::accounts::user_by_email(conn, &lookup)
                        })
                        .await?;
                        User::try_from(row.ok_or(error)?)?
                    }
                }
            }
            None => return Err(AuthError::NoAccount(email.to_owned())),
        };
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let cookie_secret = self.open_session(user.id).await?;
        Ok(NewSession {
            cookie_secret,
            user,
        })
    }

    async fn open_session(&self, user: UserId) -> Result<String, AuthError> {
        let cookie_secret = secret::generate("", 32);
        let digest = secret::digest(&cookie_secret);
        let csrf_token = secret::generate("", 24);
        db::run(&self.db, move |conn| {
            let at = now();
            db::accounts::insert_session(
                conn,
                &NewSessionRow {
                    token_hash: &digest,
                    user_id: user.0,
                    csrf_token: &csrf_token,
                    created_at: at,
                    last_seen_at: at,
                },
            )
        })
        .await?;
        Ok(cookie_secret)
    }

    /// The caller behind a session cookie; `None` for an unknown or idle-expired session, or one
    /// of a disabled account.
    pub async fn session(&self, cookie_secret: &str) -> Result<Option<Caller>, AuthError> {
        let digest = secret::digest(cookie_secret);
        let idle = chrono::TimeDelta::from_std(self.settings.get().session_idle())
            .unwrap_or(chrono::TimeDelta::MAX);
        let found = db::run(&self.db, move |conn| {
            let Some(session) = db::accounts::session(conn, &digest)? else {
                return Ok(None);
            };
            let at = now();
            if at - session.last_seen_at > idle {
                db::accounts::delete_session(conn, &digest)?;
                return Ok(None);
            }
            if at - session.last_seen_at > TOUCH_EVERY {
                db::accounts::touch_session(conn, session.id, at)?;
            }
            let user = db::accounts::active_user(conn, session.user_id)?;
            Ok(user.map(|user| (user, session.id, session.csrf_token)))
        })
        .await?;
        found
            .map(|(row, id, csrf_token)| {
                Ok(Caller {
                    user: User::try_from(row)?,
                    credential: Credential::Session { id, csrf_token },
                })
            })
            .transpose()
    }

    /// The caller behind an API token; `None` for an unknown or revoked token, or one of a
    /// disabled account.
    pub async fn token(&self, bearer: &str) -> Result<Option<Caller>, AuthError> {
        let digest = secret::digest(bearer);
        let found = db::run(&self.db, move |conn| {
            let Some(token) = db::accounts::token(conn, &digest)? else {
                return Ok(None);
            };
            let at = now();
            if token
                .last_used_at
                .is_none_or(|used| at - used > TOUCH_EVERY)
            {
                db::accounts::touch_token(conn, token.id, at)?;
            }
            db::accounts::active_user(conn, token.user_id)
        })
        .await?;
        found
            .map(|row| {
                Ok(Caller {
                    user: User::try_from(row)?,
                    credential: Credential::Token,
                })
            })
            .transpose()
    }

    /// Whether a session or token still works — not signed out, expired, revoked or of a
    /// disabled account — without counting as a use (a stream left open must not keep a session
    /// from idling out).
    pub async fn still_valid(&self, presented: &Presented) -> Result<bool, AuthError> {
        let idle = chrono::TimeDelta::from_std(self.settings.get().session_idle())
            .unwrap_or(chrono::TimeDelta::MAX);
        let presented = presented.clone();
        Ok(db::run(&self.db, move |conn| {
            let user = match &presented {
                Presented::Session(cookie) => {
                    match db::accounts::session(conn, &secret::digest(cookie))? {
                        Some(session) if now() - session.last_seen_at <= idle => session.user_id,
                        _ => return Ok(false),
                    }
                }
                Presented::Bearer(bearer) => {
                    match db::accounts::token(conn, &secret::digest(bearer))? {
                        Some(token) => token.user_id,
                        None => return Ok(false),
                    }
                }
            };
            Ok(db::accounts::active_user(conn, user)?.is_some())
        })
        .await?)
    }

    pub async fn logout(&self, cookie_secret: &str) -> Result<(), AuthError> {
        let digest = secret::digest(cookie_secret);
        db::run(&self.db, move |conn| {
            db::accounts::delete_session(conn, &digest)
        })
        .await?;
        Ok(())
    }

    /// Sessions idle past the configured lifetime are deleted (the daily housekeeping).
    pub async fn forget_idle_sessions(&self) -> Result<usize, AuthError> {
        let idle = chrono::TimeDelta::from_std(self.settings.get().session_idle())
            .unwrap_or(chrono::TimeDelta::MAX);
        let before = now() - idle;
        Ok(db::run(&self.db, move |conn| {
            db::accounts::delete_idle_sessions(conn, before)
        })
        .await?)
    }

    /// Self-registration, when the setting allows it: a member account, signed in at once.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        confirm: &str,
    ) -> Result<NewSession, AuthError> {
        if !self.settings.get().self_registration {
            return Err(AuthError::Forbidden);
        }
        let email = normalize_email(email).map_err(AuthError::Invalid)?;
        check_new_password(password, confirm, &email)?;
        self.ensure_email_free(&email).await?;
        let user = self.insert_user(&email, password, Role::Member).await?;
        let cookie_secret = self.open_session(user.id).await?;
        Ok(NewSession {
            cookie_secret,
            user,
        })
    }

    async fn ensure_email_free(&self, email: &str) -> Result<(), AuthError> {
        let lookup = email.to_owned();
        let taken = db::run(&self.db, move |conn| {
            db::accounts::user_by_email(conn, &lookup)
        })
        .await?
        .is_some();
        if taken {
            return Err(AuthError::Invalid(FieldError::new(
                "email",
                "An account with this email already exists.",
            )));
        }
        Ok(())
    }

    pub async fn users(&self, caller: &Caller) -> Result<Vec<User>, AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        db::run(&self.db, db::accounts::users)
            .await?
            .into_iter()
            .map(|row| User::try_from(row).map_err(AuthError::from))
            .collect()
    }

    /// An admin creates an account. Without a password one is generated; either way it is
    /// returned once, for the admin to pass on.
    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        role: &str,
        password: Option<&str>,
    ) -> Result<(User, String), AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        let email = normalize_email(email).map_err(AuthError::Invalid)?;
        let role = Role::parse(role.trim()).ok_or_else(|| {
            AuthError::Invalid(FieldError::new("role", "Choose admin or member."))
        })?;
        let password = match password.map(str::trim).filter(|p| !p.is_empty()) {
            Some(chosen) => {
                password::check_rules(chosen, &email)
                    .map_err(|m| AuthError::Invalid(FieldError::new("password", m)))?;
                chosen.to_owned()
            }
            None => password::generate(),
        };
        self.ensure_email_free(&email).await?;
        let user = self.insert_user(&email, &password, role).await?;
        log::info!(
            "{} created the {} account {}",
            caller.user.email,
            role.as_str(),
            email
        );
        Ok((user, password))
    }

    /// An admin gives an account a new generated password; its sessions end and its API tokens
    /// are revoked.
    pub async fn reset_password(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<(User, String), AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        let row = db::run(&self.db, move |conn| db::accounts::user(conn, user.0))
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        let target = User::try_from(row)?;
        let password = password::generate();
        let hash = hash_blocking(password.clone()).await?;
        db::run(&self.db, move |conn| {
            db::accounts::set_password(conn, user.0, &hash, PasswordChange::EndEverything)
        })
        .await?;
        log::info!(
            "{} reset the password of {} (its sessions and API tokens ended)",
            caller.user.email,
            target.email
        );
        Ok((target, password))
    }

    /// A user changes their own password. By default every session of theirs ends (the caller
    /// signs in again with the new one) and every API token of theirs is revoked; with
    /// `SignOut::OtherSessions` the caller's own session and the tokens stay.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
        confirm: &str,
        sign_out: SignOut,
    ) -> Result<(), AuthError> {
        let id = caller.user.id.0;
        let row = db::run(&self.db, move |conn| db::accounts::user(conn, id))
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        let attempt = current.to_owned();
        let stored = row.password_hash.clone();
        let current_ok = actix_web::web::block(move || password::verify(&attempt, &stored))
            .await
            .map_err(DbError::from)?;
        if !current_ok {
            return Err(AuthError::Invalid(FieldError::new(
                "current_password",
                "The current password is not right.",
            )));
        }
        check_new_password(new, confirm, &row.email)?;
        let hash = hash_blocking(new.to_owned()).await?;
        let ends = match (sign_out, &caller.credential) {
            (SignOut::OtherSessions, Credential::Session { id, .. }) => {
                PasswordChange::KeepSession(Some(*id))
            }
            // A token caller has no session to keep; the tokens stay.
            (SignOut::OtherSessions, Credential::Token) => PasswordChange::KeepSession(None),
            (SignOut::Everywhere, _) => PasswordChange::EndEverything,
        };
        db::run(&self.db, move |conn| {
            db::accounts::set_password(conn, id, &hash, ends)
        })
        .await?;
        Ok(())
    }

    /// The caller's own tokens.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>, AuthError> {
        let id = caller.user.id.0;
        let email = caller.user.email.clone();
        Ok(
            db::run(&self.db, move |conn| db::accounts::tokens_of(conn, id))
                .await?
                .into_iter()
                .map(|row| TokenInfo::new(row, email.clone()))
                .collect(),
        )
    }

    /// Every user's tokens, newest first: for admins only.
    pub async fn all_tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>, AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        Ok(db::run(&self.db, db::accounts::all_tokens)
            .await?
            .into_iter()
            .map(|(row, email)| TokenInfo::new(row, email))
            .collect())
    }

    /// A new personal API token; the secret is returned this once and stored only as a digest.
    pub async fn create_token(&self, caller: &Caller, name: &str) -> Result<String, AuthError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS {
            return Err(AuthError::Invalid(FieldError::new(
                "name",
                format!("Give the token a name of 1 to {MAX_TOKEN_NAME_CHARS} characters."),
            )));
        }
        let token = secret::generate("rd_", 32);
        let digest = secret::digest(&token);
        let prefix = token_prefix(&token);
        let user_id = caller.user.id.0;
        db::run(&self.db, move |conn| {
            db::accounts::insert_token(
                conn,
                &NewApiTokenRow {
                    user_id,
                    name: &name,
                    token_hash: &digest,
                    prefix: &prefix,
                    created_at: now(),
                },
            )
        })
        .await?;
        Ok(token)
    }

    /// Revokes a token: a member only their own (another's is "not found"), an admin any.
    pub async fn revoke_token(&self, caller: &Caller, id: i32) -> Result<(), AuthError> {
        let user_id = caller.user.id.0;
        let admin = caller.is_admin();
        let revoked = db::run(&self.db, move |conn| {
            if admin {
                db::accounts::delete_any_token(conn, id)
            } else {
                db::accounts::delete_token(conn, user_id, id)
            }
        })
        .await?;
        if !revoked {
            return Err(AuthError::NotFound("token"));
        }
        log::info!("{} revoked the API token {id}", caller.user.email);
        Ok(())
    }

    /// An admin disables an account: it cannot sign in, its sessions end and its API tokens are
    /// revoked at once. (Its proxies are the registry's business: the web layer stops them.)
    pub async fn disable_user(&self, caller: &Caller, user: UserId) -> Result<User, AuthError> {
        check_lockout_target(caller, user, "disable")?;
        let outcome = db::run(&self.db, move |conn| {
            db::accounts::disable_user(conn, user.0, now())
        })
        .await?;
        let target = lockout_outcome(outcome, "disable")?;
        log::info!(
            "{} disabled the account {}",
            caller.user.email,
            target.email
        );
        Ok(User {
            disabled: true,
            ..target
        })
    }

    /// An admin lets a disabled account sign in again (it makes new API tokens; old ones stay
    /// revoked).
    pub async fn enable_user(&self, caller: &Caller, user: UserId) -> Result<User, AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        let row = db::run(&self.db, move |conn| {
            if db::accounts::enable_user(conn, user.0)? {
                db::accounts::user(conn, user.0)
            } else {
                Ok(None)
            }
        })
        .await?
        .ok_or(AuthError::NotFound("user"))?;
        let target = User::try_from(row)?;
        log::info!("{} enabled the account {}", caller.user.email, target.email);
        Ok(target)
    }

    /// An admin deletes an account. Its sessions and tokens go; a tombstone keeps its proxies
    /// and logs owned, for admins to see and manage; its email is free for a new account.
    pub async fn delete_user(&self, caller: &Caller, user: UserId) -> Result<User, AuthError> {
        check_lockout_target(caller, user, "delete")?;
        let outcome = db::run(&self.db, move |conn| {
            db::accounts::delete_user(conn, user.0, now())
        })
        .await?;
        let target = lockout_outcome(outcome, "delete")?;
        log::info!("{} deleted the account {}", caller.user.email, target.email);
        Ok(target)
    }

    /// An account by id, for admins (deleted ones are not found).
    pub async fn user(&self, caller: &Caller, user: UserId) -> Result<User, AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        let row = db::run(&self.db, move |conn| db::accounts::user(conn, user.0))
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(User::try_from(row)?)
    }
}

/// The environment's password must meet the rules of the change-password form, and its token
/// must be long enough to be unguessable; either refuses the start, naming the variable.
fn check_bootstrap_secrets(first: &FirstAdmin, email: &str) -> Result<(), AuthError> {
    if let Some(password) = &first.password {
        password::check_rules(password, email).map_err(|reason| AuthError::WeakBootstrap {
            variable: "RUBBERDUCK_ADMIN_PASSWORD",
            reason,
            advice: "Choose a stronger one, or leave it unset to have a password generated and printed once.",
        })?;
    }
    if let Some(token) = first.bootstrap_token.as_deref().filter(|t| !t.is_empty())
        && token.chars().count() < MIN_BOOTSTRAP_TOKEN_CHARS
    {
        return Err(AuthError::WeakBootstrap {
            variable: "RUBBERDUCK_BOOTSTRAP_TOKEN",
            reason: format!("Use at least {MIN_BOOTSTRAP_TOKEN_CHARS} characters."),
            advice: "Generate one, e.g. with `openssl rand -hex 24`.",
        });
    }
    Ok(())
}

/// Only an admin may disable or delete an account, and never their own.
fn check_lockout_target(caller: &Caller, user: UserId, verb: &str) -> Result<(), AuthError> {
    if !caller.is_admin() {
        return Err(AuthError::Forbidden);
    }
    if caller.user.id == user {
        return Err(AuthError::Invalid(FieldError::new(
            "user",
            format!("You cannot {verb} your own account; ask another admin."),
        )));
    }
    Ok(())
}

fn lockout_outcome(outcome: Lockout, verb: &str) -> Result<User, AuthError> {
    match outcome {
        Lockout::Done(row) => Ok(User::try_from(row)?),
        Lockout::NotFound => Err(AuthError::NotFound("user")),
        Lockout::LastAdmin => Err(AuthError::Invalid(FieldError::new(
            "user",
            format!(
                "You cannot {verb} the last active admin: nobody could manage accounts then. Make another admin first."
            ),
        ))),
    }
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

async fn hash_blocking(password: String) -> Result<String, AuthError> {
    actix_web::web::block(move || password::hash(&password))
        .await
        .map_err(DbError::from)?
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Enough of a token to tell it apart in a list, never enough to use it.
fn token_prefix(token: &str) -> String {
    token.chars().take(7).collect()
}

fn check_new_password(password: &str, confirm: &str, email: &str) -> Result<(), AuthError> {
    password::check_rules(password, email)
        .map_err(|m| AuthError::Invalid(FieldError::new("password", m)))?;
    if password != confirm {
        return Err(AuthError::Invalid(FieldError::new(
            "confirm_password",
            "The two passwords differ.",
        )));
    }
    Ok(())
}

/// A plausible email, trimmed; the domain part is lower-cased.
pub fn normalize_email(email: &str) -> Result<String, FieldError> {
    let email = email.trim();
    let invalid = || FieldError::new("email", "Enter an email address such as ada@example.com.");
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let plausible = !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        return Err(invalid());
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_bootstrap_secrets_are_refused_without_being_shown() {
        let first = |password: Option<&str>, token: Option<&str>| FirstAdmin {
            email: "admin@localhost".to_owned(),
            password: password.map(str::to_owned),
            bootstrap_token: token.map(str::to_owned),
        };
        let refused = |first: FirstAdmin| {
            check_bootstrap_secrets(&first, "admin@localhost")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let weak_password = refused(first(Some("Zq9"), None));
        assert!(
            weak_password.contains("RUBBERDUCK_ADMIN_PASSWORD"),
            "{weak_password}"
        );
        assert!(!weak_password.contains("Zq9"), "{weak_password}");
        let own_email = refused(first(Some("admin@localhost"), None));
        assert!(
            own_email.contains("RUBBERDUCK_ADMIN_PASSWORD"),
            "{own_email}"
        );
        let weak_token = refused(first(None, Some("x7Qw")));
        assert!(
            weak_token.contains("RUBBERDUCK_BOOTSTRAP_TOKEN"),
            "{weak_token}"
        );
        assert!(!weak_token.contains("x7Qw"), "{weak_token}");
        assert!(
            check_bootstrap_secrets(
                &first(Some("a long enough password"), Some("rd_0123456789abcdef")),
                "admin@localhost"
            )
            .is_ok()
        );
        assert!(check_bootstrap_secrets(&first(None, None), "admin@localhost").is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Ok("Ada@example.com")
        );
        assert_eq!(
            normalize_email("admin@localhost").as_deref(),
            Ok("admin@localhost")
        );
        for bad in ["", "ada", "@x.io", "ada@", "a da@x.io", "ada@.io"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
