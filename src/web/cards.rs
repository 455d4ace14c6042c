//! The proxy card, shown on the Proxies page, the dashboard, the confirm and modal pages, and
//! pushed live by the proxy events.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use askama::Template;

use super::format;
use super::proxy_host::{ProxyHost, proxy_snippets};
use crate::cache::CacheCounts;
use crate::faults::ActiveScenario;
use crate::gateway::Traffic;
use crate::providers::Snippets;
use crate::registry::ProxySnapshot;

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
    /// "off", "read_write", "replay_only" or "refresh".
    pub cache_state: &'static str,
    /// Cached answers go to every caller, one without an API key included.
    pub cache_shared: bool,
    pub cache: CacheCounts,
    /// The failure kinds switched on, for the card's tags.
    pub failure_kinds: Vec<&'static str>,
    /// `X-Rubberduck-Fault` picks a request's failure.
    pub request_faults_allowed: bool,
    /// The tests (`X-Rubberduck-Scenario`) with failure state of their own, most recent first
    /// (the first few).
    pub scenarios: Vec<ActiveScenario>,
    /// How many more there are than `scenarios` shows.
    pub more_scenarios: usize,
    pub active: bool,
    /// Answered by the built-in emulator, not the provider.
    pub emulated: bool,
    pub logs_off: bool,
    /// The server directory the proxy's fixtures are loaded from (and recorded into).
    pub fixtures_dir: Option<String>,
    /// The config file that declares the proxy: it wins over edits made here at the next start.
    pub declared_in: Option<DeclaredIn>,
    /// The daily spend cap (`$5.00`), when there is one.
    pub spend_cap: Option<String>,
    /// What answers from the upstream or the emulator cost today, UTC (`$0.0123`).
    pub spent_today: String,
    /// Today's spend has reached the cap: misses are refused until the UTC day ends.
    pub spend_cap_reached: bool,
}

/// Where a declared proxy comes from, for the card's badge.
pub struct DeclaredIn {
    /// The file's name (`rubberduck.toml`), shown on the badge.
    pub file_name: String,
    /// The whole path, in the badge's tooltip.
    pub path: String,
}

impl DeclaredIn {
    fn of(path: &Path) -> Self {
        DeclaredIn {
            file_name: path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            path: path.display().to_string(),
        }
    }
}

/// Scenarios named on a card; the API lists them all.
const SCENARIOS_ON_CARD: usize = 5;

impl ProxyCard {
    pub fn new(snapshot: &ProxySnapshot, host: &ProxyHost) -> Self {
        let spec = &snapshot.spec;
        let mut scenarios = snapshot.scenarios.clone();
        scenarios.sort_by_key(|scenario| scenario.idle_seconds);
        let more_scenarios = scenarios.len().saturating_sub(SCENARIOS_ON_CARD);
        scenarios.truncate(SCENARIOS_ON_CARD);
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
            cache_shared: spec.cache.enabled
                && !spec.cache.partition_by_credential
                && !spec.emulated(),
            cache: snapshot.cache,
            failure_kinds: spec.failure_config.active_kinds(),
            request_faults_allowed: spec.failure_config.allow_request_faults,
            scenarios,
            more_scenarios,
            active: snapshot.status.is_active(),
            emulated: spec.emulated(),
            logs_off: !spec.log_requests,
            fixtures_dir: spec
                .cache
                .fixtures_dir
                .as_ref()
                .map(|dir| dir.display().to_string()),
            declared_in: spec.declared_in.as_deref().map(DeclaredIn::of),
            spend_cap: spec
                .daily_spend_cap_usd
                .map(|cap| format!("${}", format::usd_as_set(cap))),
            spent_today: format::cost(snapshot.spent_today_usd),
            spend_cap_reached: snapshot.spend_cap_reached().is_some(),
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
}

pub struct SnippetTab<'a> {
    pub language: &'static str,
    pub label: &'static str,
    pub code: &'a str,
}

#[derive(Template)]
#[template(path = "proxies/_card.html")]
pub struct ProxyCardFragment {
    pub card: ProxyCard,
}
