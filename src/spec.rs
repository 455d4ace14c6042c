//! A proxy's validated configuration as the running product holds it in memory.

use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::emulator::{self, EmulatorSettings};
use crate::faults::FailureConfig;
use crate::ids::{ProxyId, UserId};
use crate::providers::ProviderKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Replays what is recorded, records what is not.
    ReadWrite,
    /// Never asks the upstream: a request with no recorded answer gets an error.
    ReplayOnly,
    /// Always asks the upstream and records its answer over the old one.
    Refresh,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::ReadWrite => "read_write",
            CacheMode::ReplayOnly => "replay_only",
            CacheMode::Refresh => "refresh",
        }
    }

    /// Whether new answers are recorded.
    pub fn records(self) -> bool {
        self != CacheMode::ReplayOnly
    }
}

impl FromStr for CacheMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read_write" => Ok(CacheMode::ReadWrite),
            "replay_only" => Ok(CacheMode::ReplayOnly),
            "refresh" => Ok(CacheMode::Refresh),
            other => Err(format!(
                "unknown cache mode “{other}”; expected read_write, replay_only or refresh"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSettings {
    pub enabled: bool,
    pub mode: CacheMode,
    pub ttl_seconds: Option<u64>,
    /// Keys include a hash of the client's credential, so two API keys never share answers.
    pub partition_by_credential: bool,
    /// A directory on the server the entries are loaded from at start, and (when the mode
    /// records) every new entry is written to as a fixture file. Absolute.
    pub fixtures_dir: Option<PathBuf>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            mode: CacheMode::ReadWrite,
            ttl_seconds: None,
            partition_by_credential: false,
            fixtures_dir: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub id: ProxyId,
    pub name: String,
    pub provider: ProviderKind,
    pub port: u16,
    pub description: String,
    pub tags: Vec<String>,
    pub upstream_url: Option<String>,
    pub cache: CacheSettings,
    pub failure_config: FailureConfig,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    /// How fast the emulator answers, when it is the upstream.
    pub emulator: EmulatorSettings,
    /// Whether requests are written to the request log (metrics count them either way).
    pub log_requests: bool,
    pub created_at: DateTime<Utc>,
    pub owner: UserId,
    /// The config file that declares this proxy; its entries replace edits at the next start.
    pub declared_in: Option<PathBuf>,
}

impl ProxySpec {
    /// Whether the built-in emulator answers instead of an upstream.
    pub fn emulated(&self) -> bool {
        self.upstream_url.as_deref() == Some(emulator::UPSTREAM)
    }

    /// The upstream this proxy forwards to: the override, else the provider's default.
    pub fn effective_upstream(&self) -> Option<&str> {
        self.upstream_url
            .as_deref()
            .or_else(|| self.provider.provider().default_upstream())
    }
}

/// A proxy definition that passed every check that needs no registry state.
#[derive(Debug, Clone)]
pub struct ValidProxy {
    pub name: String,
    pub provider: ProviderKind,
    /// `None` asks the registry to pick a free port.
    pub port: Option<u16>,
    pub description: String,
    pub tags: Vec<String>,
    pub upstream_url: Option<String>,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    pub cache: CacheSettings,
    pub emulator: EmulatorSettings,
    pub log_requests: bool,
}

/// A deleted proxy: only its id, owner and name remain, for reading its logs.
#[derive(Debug, Clone)]
pub struct DeletedProxy {
    pub id: ProxyId,
    pub owner: UserId,
    pub name: String,
}
