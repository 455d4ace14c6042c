//! What the templates show: view models built from registry snapshots, and the template structs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use askama::Template;
use serde::{Deserialize, Serialize};

use super::dashboard::Dashboard;
use super::failures::FailureForm;
use super::format;
use crate::cache::{CacheCounts, CacheInfo};
use crate::emulator::{self, EmulatorSettings};
use crate::gateway::Traffic;
use crate::providers::{ProviderKind, Snippets};
use crate::registry::input::{CacheInput, EmulatorInput, PortInput, ProxyInput, TagsInput};
use crate::registry::{ProxySnapshot, ProxyStatus, Totals};
use crate::spec::ProxySpec;
use crate::validation::FieldError;

/// The host name proxies are reachable at, as seen by whoever made this request: proxies bound
/// to loopback are only reachable there, proxies bound beyond it are reached the way the browser
/// reached the dashboard (an intranet user sees `devbox.corp`, not `127.0.0.1`).
pub struct ProxyHost(String);

impl ProxyHost {
    pub fn for_request(req: &HttpRequest, bound: IpAddr) -> Self {
        let host = if bound.is_loopback() || !bound.is_unspecified() {
            ip_for_url(bound)
        } else {
            let info = req.connection_info();
            strip_port(info.host()).to_owned()
        };
        ProxyHost(host)
    }

    pub fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.0)
    }

    /// Where a proxy answers now: its listening port until a port change is applied.
    pub fn proxy_url(&self, snapshot: &ProxySnapshot) -> String {
        self.url(snapshot.listening_port.unwrap_or(snapshot.spec.port))
    }
}

/// The programs that call this proxy with its provider's SDKs, at the address the viewer uses.
pub fn proxy_snippets(snapshot: &ProxySnapshot, host: &ProxyHost) -> Snippets {
    snapshot
        .spec
        .provider
        .provider()
        .snippets(&host.proxy_url(snapshot))
}

fn ip_for_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host:port`, `[v6]:port` or a bare host, to the host alone.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[derive(Debug, Serialize)]
pub struct CacheJson {
    pub enabled: bool,
    pub mode: &'static str,
    pub ttl_seconds: Option<u64>,
    pub partition_by_credential: bool,
}

/// A proxy in the admin API's contract shape.
#[derive(Debug, Serialize)]
pub struct ProxyJson {
    pub id: i32,
    pub name: String,
    pub provider: ProviderKind,
    pub port: u16,
    pub description: String,
    pub tags: Vec<String>,
    pub upstream_url: Option<String>,
    pub status: ProxyStatus,
    pub last_error: Option<String>,
    pub url: String,
    pub created_at: String,
    pub cache: CacheJson,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    /// The emulator's latency; used while `upstream_url` is `emulator`.
    pub emulator: EmulatorSettings,
    /// Whether requests go to the request log (metrics count them either way).
    pub log_requests: bool,
    pub listening_port: Option<u16>,
    pub in_flight: usize,
    /// Requests and tokens since Rubberduck started.
    pub traffic: Traffic,
    /// Set on creation when the port is busy in the OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl ProxyJson {
    pub fn new(snapshot: &ProxySnapshot, host: &ProxyHost) -> Self {
        let spec: &ProxySpec = &snapshot.spec;
        ProxyJson {
            id: spec.id.0,
            name: spec.name.clone(),
            provider: spec.provider,
            port: spec.port,
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            upstream_url: spec.upstream_url.clone(),
            status: snapshot.status,
            last_error: snapshot.last_error.clone(),
            url: host.proxy_url(snapshot),
            created_at: spec
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cache: CacheJson {
                enabled: spec.cache.enabled,
                mode: spec.cache.mode.as_str(),
                ttl_seconds: spec.cache.ttl_seconds,
                partition_by_credential: spec.cache.partition_by_credential,
            },
            vertex_service_account_file: spec.vertex_service_account_file.clone(),
            aws_region: spec.aws_region.clone(),
            emulator: spec.emulator,
            log_requests: spec.log_requests,
            listening_port: snapshot.listening_port,
            in_flight: snapshot.in_flight,
            traffic: snapshot.traffic,
            warning: None,
        }
    }
}

/// Counts card renders, to name each render's radio group apart.
static SNIPPET_RENDERS: AtomicU64 = AtomicU64::new(0);

/// One proxy card on the Proxies page.
pub struct ProxyCard {
    pub id: i32,
    pub name: String,
    pub provider_id: &'static str,
    pub provider_name: &'static str,
    pub port: u16,
    pub listening_port: Option<u16>,
    pub description: String,
    pub tags: Vec<String>,
    pub status: &'static str,
    pub last_error: Option<String>,
    pub sdk_setting: &'static str,
    pub sdk_url: String,
    pub snippets: Snippets,
    /// Changes with the address in the snippets, so the page keeps the viewer's chosen language
    /// across live updates (htmx `hx-preserve`) but not across a port change.
    pub snippets_id: String,
    /// The name of the language radio group, new with every render: a re-rendered card's
    /// checked Python button would otherwise uncheck the preserved box's choice (same name, same
    /// document) before htmx puts the preserved box back.
    pub snippets_group: String,
    pub in_flight: usize,
    pub traffic: Traffic,
    pub rpm: String,
    /// Over the last hour, as a whole percentage.
    pub error_rate: Option<u64>,
    /// "off", "read_write" or "replay_only".
    pub cache_state: &'static str,
    pub cache: CacheCounts,
    /// The failure kinds switched on, for the card's tags.
    pub failure_kinds: Vec<&'static str>,
    pub active: bool,
    /// Answered by the built-in emulator, not the provider.
    pub emulated: bool,
    pub logs_off: bool,
}

impl ProxyCard {
    pub fn new(snapshot: &ProxySnapshot, host: &ProxyHost) -> Self {
        let spec = &snapshot.spec;
        let hint = spec.provider.provider().sdk_hint();
        let snippets_id = format!(
            "snippets-{}-{}",
            spec.id.0,
            snapshot.listening_port.unwrap_or(spec.port)
        );
        ProxyCard {
            id: spec.id.0,
            name: spec.name.clone(),
            provider_id: spec.provider.id(),
            provider_name: spec.provider.name(),
            port: spec.port,
            listening_port: snapshot
                .listening_port
                .filter(|_| snapshot.port_change_pending()),
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            status: snapshot.status.as_str(),
            last_error: snapshot.last_error.clone(),
            sdk_setting: hint.setting,
            sdk_url: format!("{}{}", host.proxy_url(snapshot), hint.path),
            snippets: proxy_snippets(snapshot, host),
            snippets_id: snippets_id.clone(),
            snippets_group: format!(
                "{snippets_id}-language-{}",
                SNIPPET_RENDERS.fetch_add(1, Ordering::Relaxed)
            ),
            in_flight: snapshot.in_flight,
            traffic: snapshot.traffic,
            rpm: format::per_minute(snapshot.recent.requests_per_minute),
            error_rate: snapshot
                .recent
                .error_rate
                .map(|rate| (rate * 100.0).round() as u64),
            cache_state: if spec.cache.enabled {
                spec.cache.mode.as_str()
            } else {
                "off"
            },
            cache: snapshot.cache,
            failure_kinds: spec.failure_config.active_kinds(),
            active: snapshot.status.is_active(),
            emulated: spec.emulated(),
            logs_off: !spec.log_requests,
        }
    }

    /// The card's language switch, Python first (shown until the viewer picks another).
    pub fn snippet_tabs(&self) -> [SnippetTab<'_>; 3] {
        [
            SnippetTab {
                language: "python",
                label: "Python",
                code: &self.snippets.python,
            },
            SnippetTab {
                language: "typescript",
                label: "TypeScript",
                code: &self.snippets.typescript,
            },
            SnippetTab {
                language: "curl",
                label: "curl",
                code: &self.snippets.curl,
            },
        ]
    }

    fn matches(&self, filters: &ProxyFilters) -> bool {
        let query = filters.q.trim().to_lowercase();
        let text_matches = query.is_empty()
            || [
                self.name.as_str(),
                self.description.as_str(),
                self.provider_name,
                self.provider_id,
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(&query))
            || self.port.to_string().contains(&query)
            || self.tags.iter().any(|t| t.to_lowercase().contains(&query));
        let status_matches = filters.status.is_empty() || filters.status == self.status;
        let provider_matches = filters.provider.is_empty() || filters.provider == self.provider_id;
        text_matches && status_matches && provider_matches
    }
}

pub struct SnippetTab<'a> {
    pub language: &'static str,
    pub label: &'static str,
    pub code: &'a str,
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
        cards.into_iter().filter(|c| c.matches(self)).collect()
    }

    pub fn status_is(&self, status: &str) -> bool {
        self.status == status
    }

    pub fn is_empty(&self) -> bool {
        self.q.trim().is_empty() && self.status.is_empty() && self.provider.is_empty()
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
    /// Checkbox (Configure only, with the cache fields): requests go to the request log.
    pub log_requests: Option<String>,
    /// Checkbox: the built-in emulator answers instead of an upstream.
    pub use_emulator: Option<String>,
    pub emulator_ttft_ms: String,
    pub emulator_tokens_per_second: String,
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
            use_emulator: spec.emulated().then(|| "on".into()),
            emulator_ttft_ms: spec.emulator.ttft_ms.to_string(),
            emulator_tokens_per_second: spec.emulator.tokens_per_second.to_string(),
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
            ..ProxyInput::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct FormErrors(BTreeMap<Cow<'static, str>, String>);

impl FormErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Errors about fields the form does not show (a failed save, say).
    pub fn general(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(field, _)| !FORM_FIELDS.contains(&field.as_ref()))
            .map(|(_, message)| message.as_str())
            .collect()
    }
}

const FORM_FIELDS: [&str; 8] = [
    "name",
    "provider",
    "port",
    "description",
    "tags",
    "upstream_url",
    "emulator.ttft_ms",
    "emulator.tokens_per_second",
];

impl From<Vec<FieldError>> for FormErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        let mut map = BTreeMap::new();
        for error in errors {
            map.entry(error.field).or_insert(error.message);
        }
        FormErrors(map)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "dashboard/index.html")]
pub struct DashboardPage {
    pub stats: Dashboard,
}

#[derive(Template)]
#[template(path = "dashboard/_stats.html")]
pub struct DashboardStatsFragment {
    pub stats: Dashboard,
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

#[derive(Template)]
#[template(path = "proxies/_card.html")]
pub struct ProxyCardFragment {
    pub card: ProxyCard,
}

#[derive(Template)]
#[template(path = "proxies/_totals.html")]
pub struct TotalsFragment {
    pub totals: Totals,
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

#[derive(Template)]
#[template(path = "proxies/_edit_modal.html")]
pub struct EditModal {
    pub id: i32,
    pub provider_name: &'static str,
    pub running: bool,
    pub form: ProxyForm,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "proxies/_cache_modal.html")]
pub struct CacheModal {
    pub card: ProxyCard,
    pub info: CacheInfo,
    pub size: String,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "proxies/_failures_modal.html")]
pub struct FailuresModal {
    pub card: ProxyCard,
    pub form: FailureForm,
    pub errors: FormErrors,
    pub statuses: [u16; 11],
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "proxies/_port_check.html")]
pub struct PortCheck {
    pub message: Option<String>,
    pub warning: bool,
}

#[derive(Template)]
#[template(path = "proxies/delete.html")]
pub struct ConfirmDeletePage {
    pub card: ProxyCard,
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("devbox.corp:8000"), "devbox.corp");
        assert_eq!(strip_port("devbox.corp"), "devbox.corp");
        assert_eq!(strip_port("[fe80::1]:8000"), "[fe80::1]");
        assert_eq!(strip_port("10.0.0.5:80"), "10.0.0.5");
    }
}
