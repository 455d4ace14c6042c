//! Single sign-on through an OpenID Connect provider (Keycloak, Google, Entra ID, Dex …):
//! the authorization code flow with PKCE, state and nonce; the ID token is verified by
//! openidconnect against the provider's published keys. This module says *who* signed in and
//! whether the policy lets them in; `Accounts` turns that into a session.

mod http;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    Scope, SignatureVerificationError, SubjectIdentifier, TokenResponse,
};
use serde::Deserialize;

use super::{normalize_email, secret};

/// How long a started sign-in may take at the provider (typing a password, a second factor).
const ATTEMPT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Started sign-ins kept at most; anyone may start one, so memory stays bounded.
const MAX_ATTEMPTS: u64 = 10_000;
/// Discovery (and so the provider's signing keys) is read again after this long, so keys the
/// provider rotates are picked up without a restart.
const REDISCOVER_AFTER: Duration = Duration::from_secs(60 * 60);
/// After a failed discovery, sign-ins do not retry more often than this.
const RETRY_AFTER: Duration = Duration::from_secs(5);
const MAX_PROVIDER_TEXT_CHARS: usize = 200;

/// The client openidconnect builds from discovery: authorization endpoint known, token and
/// user-info endpoints as the provider lists them.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Settings from the environment (see `config::OidcArgs`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_url: Option<String>,
    pub name: String,
    /// Separated by spaces or commas.
    pub scopes: String,
    /// Comma-separated; empty admits every domain.
    pub allowed_domains: String,
    pub auto_create: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A mistake in the configuration (ours or the provider's), shown as it is.
    #[error("Single sign-on is not available: {0}")]
    Misconfigured(String),
    /// The provider could not be reached or answered nonsense: the details (addresses,
    /// network errors) go to the log, not to a page anyone may open.
    #[error(
        "Single sign-on is not available right now: the identity provider could not be reached (the server log says why). Try again in a moment."
    )]
    Unreachable(String),
    #[error("{}", denied_message(.error, .description.as_deref()))]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error(
        "This sign-in has expired or was started in another browser; start again with the button below."
    )]
    StaleAttempt,
    #[error("Sign-in refused: the identity provider's answer could not be verified ({0}).")]
    Unverifiable(String),
    #[error(
        "The identity provider did not share a usable email address, which Rubberduck needs (ask for the email scope)."
    )]
    NoEmail,
    #[error("{0} is not verified at the identity provider; verify it there, then sign in again.")]
    UnverifiedEmail(String),
    #[error("{email} may not sign in here: only addresses at {allowed} may.")]
    DomainNotAllowed { email: String, allowed: String },
}

fn denied_message(error: &str, description: Option<&str>) -> String {
    if error == "access_denied" {
        return "Sign-in was cancelled or refused at the identity provider.".to_owned();
    }
    match description {
        Some(description) => format!("The identity provider did not sign you in: {description}"),
        None => format!("The identity provider did not sign you in ({error})."),
    }
}

/// What the provider sends the browser back with (no `Debug`: the code must not reach a log).
#[derive(Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Where to send the browser, and the key the browser must bring back (in a cookie) so that a
/// sign-in started in one browser cannot be finished in another (login CSRF).
pub struct Authorization {
    pub url: String,
    pub browser_key: String,
}

/// Someone the provider vouched for and the policy admits.
#[derive(Debug)]
pub struct Identity {
    /// Normalised like every account's email.
    pub email: String,
    /// Where the browser wanted to go before signing in.
    pub next: String,
}

/// What the sign-in button shows.
pub struct Button {
    pub label: String,
    /// Why it cannot work at all (a configuration mistake); the button is shown disabled.
    pub broken: Option<String>,
    /// The last attempt to reach the provider failed; clicking tries again.
    pub unreachable: bool,
}

#[derive(Clone)]
struct Attempt {
    browser_key: String,
    nonce: String,
    pkce_verifier: String,
    next: String,
}

enum Provider {
    NotYet,
    Ready {
        client: Arc<Client>,
        refresh_at: Instant,
    },
    Failed {
        reason: String,
        at: Instant,
    },
}

pub struct Oidc {
    label: String,
    /// `Err` holds why the configuration cannot work (checked once, at start).
    issuer: Result<IssuerUrl, String>,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: OnceLock<RedirectUrl>,
    redirect_error: OnceLock<String>,
    scopes: Vec<Scope>,
    allowed_domains: Vec<String>,
    auto_create: bool,
    provider: ArcSwap<Provider>,
    attempts: moka::sync::Cache<String, Attempt>,
}

impl Oidc {
    /// Checks the configuration; a mistake is logged and shown on the login page, never fatal.
    pub fn new(config: OidcConfig) -> Oidc {
        let issuer = IssuerUrl::new(config.issuer.trim().to_owned())
            .map_err(|e| format!("RUBBERDUCK_OIDC_ISSUER is not a URL ({e})"))
            .and_then(|issuer| {
                if http::is_acceptable(issuer.url()) {
                    Ok(issuer)
                } else {
                    Err(format!(
                        "RUBBERDUCK_OIDC_ISSUER must be an https URL (plain http only on this machine), not {}",
                        issuer.as_str()
                    ))
                }
            });
        if let Err(reason) = &issuer {
            log::warn!("Single sign-on is off: {reason}");
        }
        let oidc = Oidc {
            label: config.name.trim().to_owned(),
            issuer,
            client_id: ClientId::new(config.client_id.trim().to_owned()),
            client_secret: config
                .client_secret
                .filter(|s| !s.is_empty())
                .map(ClientSecret::new),
            redirect: OnceLock::new(),
            redirect_error: OnceLock::new(),
            scopes: config
                .scopes
                .split([' ', ','])
                .map(str::trim)
                // openidconnect always asks for `openid` itself.
                .filter(|scope| !scope.is_empty() && *scope != "openid")
                .map(|scope| Scope::new(scope.to_owned()))
                .collect(),
            allowed_domains: config
                .allowed_domains
                .split(',')
                .map(|domain| domain.trim().trim_start_matches('@').to_lowercase())
                .filter(|domain| !domain.is_empty())
                .collect(),
            auto_create: config.auto_create,
            provider: ArcSwap::from_pointee(Provider::NotYet),
            attempts: moka::sync::Cache::builder()
                .max_capacity(MAX_ATTEMPTS)
                .time_to_live(ATTEMPT_LIFETIME)
                .build(),
        };
        if let Some(url) = config.redirect_url.filter(|u| !u.trim().is_empty()) {
            oidc.set_redirect(url.trim().to_owned());
        }
        oidc
    }

    /// Fixes the default redirect URL once the dashboard's address is known (a configured one
    /// wins).
    pub fn dashboard_at(&self, addr: SocketAddr) {
        if self.redirect.get().is_some() || self.redirect_error.get().is_some() {
            return;
        }
        let host = if addr.ip().is_unspecified() {
            log::warn!(
                "Single sign-on: the dashboard listens on every address, so the default redirect URL names localhost; set RUBBERDUCK_OIDC_REDIRECT_URL to the address browsers use"
            );
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        self.set_redirect(format!("http://{host}/login/oidc/callback"));
    }

    fn set_redirect(&self, url: String) {
        match RedirectUrl::new(url) {
            Ok(url) => {
                let _ = self.redirect.set(url);
            }
            Err(e) => {
                let reason = format!("RUBBERDUCK_OIDC_REDIRECT_URL is not a URL ({e})");
                log::warn!("Single sign-on is off: {reason}");
                let _ = self.redirect_error.set(reason);
            }
        }
    }

    pub fn auto_create(&self) -> bool {
        self.auto_create
    }

    pub fn button(&self) -> Button {
        let broken = match (&self.issuer, self.redirect_error.get()) {
            (Err(reason), _) => Some(reason.clone()),
            (_, Some(reason)) => Some(reason.clone()),
            _ => None,
        };
        let unreachable =
            broken.is_none() && matches!(**self.provider.load(), Provider::Failed { .. });
        Button {
            label: self.label.clone(),
            broken,
            unreachable,
        }
    }

    /// Reads the provider's discovery document and keys. Called at start (in the background,
    /// so a slow provider never holds up startup) and again whenever they are needed and old.
    pub async fn discover(&self) -> Result<Arc<Client>, OidcError> {
        let issuer = self.issuer.clone().map_err(OidcError::Misconfigured)?;
        let metadata = match CoreProviderMetadata::discover_async(issuer.clone(), &http::send).await
        {
            Ok(metadata) => metadata,
            Err(e) => {
                let reason = format!(
                    "cannot read the provider's discovery document at {}: {}",
                    issuer.as_str(),
                    error_chain(&e)
                );
                self.failed(&reason);
                return Err(OidcError::Unreachable(reason));
            }
        };
        // The browser is sent to the authorization endpoint with the PKCE challenge and nonce;
        // the same rule as for our own requests keeps those off the network in clear.
        if !http::is_acceptable(metadata.authorization_endpoint().url()) {
            let reason = format!(
                "the provider's authorization endpoint {} is not https",
                metadata.authorization_endpoint().as_str()
            );
            self.failed(&reason);
            return Err(OidcError::Misconfigured(reason));
        }
        let auth_type = client_auth_type(metadata.token_endpoint_auth_methods_supported());
        let client = Arc::new(
            CoreClient::from_provider_metadata(
                metadata,
                self.client_id.clone(),
                self.client_secret.clone(),
            )
            .set_auth_type(auth_type),
        );
        if matches!(
            **self.provider.load(),
            Provider::NotYet | Provider::Failed { .. }
        ) {
            log::info!("Single sign-on through {} is ready", issuer.as_str());
        }
        self.provider.store(Arc::new(Provider::Ready {
            client: Arc::clone(&client),
            refresh_at: Instant::now() + REDISCOVER_AFTER,
        }));
        Ok(client)
    }

    /// A failed discovery is remembered for the login page, unless an earlier one worked:
    /// that client stays in use while the provider is briefly unreachable, and is refreshed
    /// again a little later.
    fn failed(&self, reason: &str) {
        log::warn!("Single sign-on: {reason}");
        let next = match &**self.provider.load() {
            Provider::Ready { client, .. } => Provider::Ready {
                client: Arc::clone(client),
                refresh_at: Instant::now() + RETRY_AFTER,
            },
            _ => Provider::Failed {
                reason: reason.to_owned(),
                at: Instant::now(),
            },
        };
        self.provider.store(Arc::new(next));
    }

    /// The provider's client, discovering it first when it is missing or old.
    async fn client(&self) -> Result<Arc<Client>, OidcError> {
        match &**self.provider.load() {
            Provider::Ready { client, refresh_at } if Instant::now() < *refresh_at => {
                return Ok(Arc::clone(client));
            }
            Provider::Ready { client, .. } => {
                // Old but working: keep using it when the provider is briefly unreachable.
                let stale = Arc::clone(client);
                return Ok(self.discover().await.unwrap_or(stale));
            }
            Provider::Failed { reason, at } if at.elapsed() < RETRY_AFTER => {
                return Err(OidcError::Unreachable(reason.clone()));
            }
            Provider::NotYet | Provider::Failed { .. } => {}
        }
        self.discover().await
    }

    fn redirect(&self) -> Result<&RedirectUrl, OidcError> {
        self.redirect.get().ok_or_else(|| {
            OidcError::Misconfigured(
                self.redirect_error
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "the redirect URL is not known yet".to_owned()),
            )
        })
    }

    /// Starts a sign-in: remembers its state, nonce and PKCE verifier here (never in the
    /// browser) and names the provider's page to send the browser to.
    pub async fn begin(&self, next: String) -> Result<Authorization, OidcError> {
        let redirect = self.redirect()?;
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Borrowed(redirect));
        for scope in &self.scopes {
            request = request.add_scope(scope.clone());
        }
        let (url, state, nonce) = request.url();
        let browser_key = secret::generate("", 32);
        self.attempts.insert(
            state.secret().clone(),
            Attempt {
                browser_key: browser_key.clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                next,
            },
        );
        Ok(Authorization {
            url: url.to_string(),
            browser_key,
        })
    }

    /// Finishes a sign-in: the state must be one we started, in this browser; the code is
    /// exchanged (with the PKCE verifier) and the ID token verified (signature, issuer,
    /// audience, expiry, nonce); then the policy decides.
    pub async fn finish(
        &self,
        callback: Callback,
        browser_key: Option<&str>,
    ) -> Result<Identity, OidcError> {
        // Each attempt is used once, whatever happens next.
        let attempt = callback
            .state
            .as_deref()
            .and_then(|state| self.attempts.remove(state));
        // Checked before the provider's error is shown: otherwise anyone could put words of
        // their choosing on our login page with a crafted link.
        let Some(attempt) =
            attempt.filter(|attempt| browser_key == Some(attempt.browser_key.as_str()))
        else {
            return Err(OidcError::StaleAttempt);
        };
        if let Some(error) = callback.error {
            return Err(OidcError::Denied {
                error: clip(&error),
                description: callback.error_description.as_deref().map(clip),
            });
        }
        let code = callback
            .code
            .filter(|code| !code.is_empty())
            .ok_or_else(|| OidcError::Unverifiable("no authorization code".to_owned()))?;
        let redirect = self.redirect()?;
        let mut client = self.client().await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| {
                OidcError::Misconfigured(
                    "the provider's discovery document names no token endpoint".to_owned(),
                )
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier))
            .set_redirect_uri(Cow::Borrowed(redirect))
            .request_async(&http::send)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(answer) => OidcError::Unverifiable(format!(
                    "the provider refused the code: {}",
                    clip(&answer.to_string())
                )),
                RequestTokenError::Request(e) => {
                    let reason = format!("the token request failed: {e}");
                    log::warn!("Single sign-on: {reason}");
                    OidcError::Unreachable(reason)
                }
                // Not the parser's words: they may quote the answer, which carries tokens.
                RequestTokenError::Parse(..) => {
                    OidcError::Unverifiable("the token answer is not valid JSON".to_owned())
                }
                RequestTokenError::Other(reason) => OidcError::Unverifiable(clip(&reason)),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::Unverifiable("the answer has no ID token".to_owned()))?;
        let nonce = Nonce::new(attempt.nonce);
        let verified = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .cloned();
        let claims = match verified {
            Ok(claims) => claims,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // Signed with a key published after our last look: the provider rotated its
                // keys. (Only the provider's own token endpoint hands us ID tokens, so nobody
                // else can make us rediscover.)
                client = self.discover().await?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| OidcError::Unverifiable(error_chain(&e)))?
                    .clone()
            }
            Err(e) => return Err(OidcError::Unverifiable(error_chain(&e))),
        };
        let (email, verified) = match claims.email() {
            Some(email) => (email.to_string(), claims.email_verified()),
            // Some providers put the email only behind the user-info endpoint.
            None => {
                user_info_email(
                    &client,
                    token.access_token().clone(),
                    claims.subject().clone(),
                )
                .await?
            }
        };
        let email = normalize_email(&email).map_err(|_| OidcError::NoEmail)?;
        self.admit(&email, verified)?;
        Ok(Identity {
            email,
            next: attempt.next,
        })
    }

    /// The sign-in policy: a verified email (when the provider says at all) in an allowed
    /// domain.
    fn admit(&self, email: &str, verified: Option<bool>) -> Result<(), OidcError> {
        if verified == Some(false) {
            return Err(OidcError::UnverifiedEmail(email.to_owned()));
        }
        let domain = email.rsplit_once('@').map_or("", |(_, domain)| domain);
        if !self.allowed_domains.is_empty() && !self.allowed_domains.iter().any(|d| d == domain) {
            return Err(OidcError::DomainNotAllowed {
                email: email.to_owned(),
                allowed: self.allowed_domains.join(", "),
            });
        }
        Ok(())
    }
}

async fn user_info_email(
    client: &Client,
    access_token: AccessToken,
    subject: SubjectIdentifier,
) -> Result<(String, Option<bool>), OidcError> {
    let Ok(request) = client.user_info(access_token, Some(subject)) else {
        return Err(OidcError::NoEmail);
    };
    let info: CoreUserInfoClaims = request
        .request_async(&http::send)
        .await
        .map_err(|e| OidcError::Unverifiable(error_chain(&e)))?;
    let email = info.email().ok_or(OidcError::NoEmail)?;
    Ok((email.to_string(), info.email_verified()))
}

/// `client_secret_basic` unless the provider lists only `client_secret_post`.
fn client_auth_type(supported: Option<&Vec<CoreClientAuthMethod>>) -> AuthType {
    match supported {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

/// An error with its causes, for the log and the login page (openidconnect's errors keep the
/// useful part in their sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Text from the provider's redirect is anyone's text: kept short on the page.
fn clip(text: &str) -> String {
    text.chars().take(MAX_PROVIDER_TEXT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(allowed_domains: &str, issuer: &str) -> Oidc {
        Oidc::new(OidcConfig {
            issuer: issuer.to_owned(),
            client_id: "rubberduck".to_owned(),
            client_secret: None,
            redirect_url: None,
            name: "Corp SSO".to_owned(),
            scopes: "openid, email profile".to_owned(),
            allowed_domains: allowed_domains.to_owned(),
            auto_create: true,
        })
    }

    #[test]
    fn policy_wants_a_verified_email_in_an_allowed_domain() {
        let open = oidc("", "https://idp.example");
        assert!(open.admit("ada@anywhere.example", None).is_ok());
        assert!(open.admit("ada@anywhere.example", Some(true)).is_ok());
        assert!(matches!(
            open.admit("ada@anywhere.example", Some(false)),
            Err(OidcError::UnverifiedEmail(_))
        ));
        let corp = oidc(" Corp.example, @lab.example ", "https://idp.example");
        assert!(corp.admit("ada@corp.example", Some(true)).is_ok());
        assert!(corp.admit("bob@lab.example", None).is_ok());
        assert!(matches!(
            corp.admit("eve@evil.example", Some(true)),
            Err(OidcError::DomainNotAllowed { .. })
        ));
        // A subdomain is another domain.
        assert!(corp.admit("eve@x.corp.example", Some(true)).is_err());
    }

    #[test]
    fn scopes_never_repeat_openid() {
        let scopes: Vec<String> = oidc("", "https://idp.example")
            .scopes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(scopes, ["email", "profile"]);
    }

    #[test]
    fn a_plain_http_issuer_elsewhere_disables_the_button() {
        let remote = oidc("", "http://idp.corp.example/realms/dev");
        let button = remote.button();
        assert!(button.broken.is_some_and(|reason| reason.contains("https")));
        let local = oidc("", "http://127.0.0.1:8080/realms/dev");
        local.dashboard_at(SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert!(local.button().broken.is_none());
        assert_eq!(
            local
                .redirect()
                .map(|r| r.as_str().to_owned())
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8000/login/oidc/callback")
        );
        assert!(oidc("", "not a url").button().broken.is_some());
    }

    #[test]
    fn network_details_stay_in_the_log() {
        let error = OidcError::Unreachable("cannot reach http://10.1.2.3:8080: refused".to_owned());
        assert!(!error.to_string().contains("10.1.2.3"), "{error}");
    }

    #[test]
    fn provider_errors_read_as_sentences() {
        assert_eq!(
            denied_message("access_denied", Some("User said no")),
            "Sign-in was cancelled or refused at the identity provider."
        );
        assert_eq!(
            denied_message("login_required", None),
            "The identity provider did not sign you in (login_required)."
        );
    }
}
