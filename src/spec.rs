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

/// How a cached stream goes out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamReplay {
    /// All chunks at once.
    Instant,
    /// With the gaps between chunks it was recorded with.
    Recorded,
    /// The recorded gaps divided by this factor, in hundredths (`200`: twice as fast).
    Speed { percent: u32 },
}

impl StreamReplay {
    pub fn as_text(self) -> String {
        match self {
            StreamReplay::Instant => "instant".into(),
            StreamReplay::Recorded => "recorded".into(),
            StreamReplay::Speed { percent } => {
                let factor = f64::from(percent) / 100.0;
                format!("{factor}")
            }
        }
    }

    /// How long to wait before a chunk recorded `gap_ms` after the one before it.
    pub fn wait_ms(self, gap_ms: u64) -> u64 {
        match self {
            StreamReplay::Instant => 0,
            StreamReplay::Recorded => gap_ms,
            StreamReplay::Speed { percent } => {
                gap_ms.saturating_mul(100) / u64::from(percent.max(1))
            }
        }
    }
}

impl FromStr for StreamReplay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "instant" => Ok(StreamReplay::Instant),
            "recorded" => Ok(StreamReplay::Recorded),
            other => match other.parse::<f64>() {
                Ok(factor) if (0.01..=1000.0).contains(&factor) => {
                    // Bounded above, so the product fits.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let percent = (factor * 100.0).round() as u32;
                    Ok(StreamReplay::Speed { percent })
                }
                _ => Err(format!(
                    "stream replay “{other}” is not instant, recorded, or a speed factor between 0.01 and 1000"
                )),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub mode: CacheMode,
    pub ttl_seconds: Option<u64>,
    /// Keys include a hash of the client's credential, so two API keys never share answers.
    pub partition_by_credential: bool,
    /// A directory on the server the entries are loaded from at start, and (when the mode
    /// records) every new entry is written to as a fixture file. Absolute.
    pub fixtures_dir: Option<PathBuf>,
    /// Dotted JSON paths of the request body left out of the key (`user`, `metadata.run_id`):
    /// fields that change every run.
    pub ignore_fields: Vec<String>,
    pub stream_replay: StreamReplay,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            mode: CacheMode::ReadWrite,
            ttl_seconds: None,
            partition_by_credential: false,
            fixtures_dir: None,
            ignore_fields: Vec::new(),
            stream_replay: StreamReplay::Instant,
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
    /// Past this much live (upstream) spend in a UTC day, misses are refused; hits go on.
    pub daily_spend_cap_usd: Option<f64>,
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
    pub daily_spend_cap_usd: Option<f64>,
}

/// A deleted proxy: only its id, owner and name remain, for reading its logs.
#[derive(Debug, Clone)]
pub struct DeletedProxy {
    pub id: ProxyId,
    pub owner: UserId,
    pub name: String,
}
