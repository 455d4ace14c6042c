//! A proxy's validated configuration as the running product holds it in memory.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::UserId;
use crate::db::DbError;
use crate::db::models::ProxyRow;
use crate::emulator::{self, EmulatorSettings};
use crate::faults::FailureConfig;
use crate::providers::ProviderKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProxyId(pub i32);

impl fmt::Display for ProxyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    ReadWrite,
    ReplayOnly,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::ReadWrite => "read_write",
            CacheMode::ReplayOnly => "replay_only",
        }
    }
}

impl FromStr for CacheMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read_write" => Ok(CacheMode::ReadWrite),
            "replay_only" => Ok(CacheMode::ReplayOnly),
            other => Err(format!(
                "unknown cache mode “{other}”; expected read_write or replay_only"
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
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            mode: CacheMode::ReadWrite,
            ttl_seconds: None,
            partition_by_credential: false,
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
    pub created_at: DateTime<Utc>,
    pub owner: UserId,
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

impl TryFrom<ProxyRow> for ProxySpec {
    type Error = DbError;

    fn try_from(row: ProxyRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| DbError::Corrupt(format!("proxy {}: {what}", row.id));
        Ok(ProxySpec {
            id: ProxyId(row.id),
            provider: row
                .provider
                .parse()
                .map_err(|e: crate::providers::UnknownProvider| corrupt(&e.to_string()))?,
            port: u16::try_from(row.port).map_err(|_| corrupt("port out of range"))?,
            tags: serde_json::from_str(&row.tags).map_err(|_| corrupt("tags are not a list"))?,
            cache: CacheSettings {
                enabled: row.cache_enabled,
                mode: row.cache_mode.parse().map_err(|e: String| corrupt(&e))?,
                ttl_seconds: row
                    .cache_ttl_seconds
                    .map(|ttl| u64::try_from(ttl).map_err(|_| corrupt("negative cache TTL")))
                    .transpose()?,
                partition_by_credential: row.cache_partition_by_credential,
            },
            failure_config: serde_json::from_str::<serde_json::Value>(&row.failure_config)
                .ok()
                .and_then(|json| FailureConfig::from_json(json).ok())
                .filter(|config| config.validate().is_ok())
                .ok_or_else(|| corrupt("failure config is not valid"))?,
            owner: UserId(row.owner_id.ok_or_else(|| corrupt("no owner"))?),
            emulator: EmulatorSettings {
                ttft_ms: u32::try_from(row.emulator_ttft_ms)
                    .map_err(|_| corrupt("negative emulator time to first token"))?,
                tokens_per_second: u32::try_from(row.emulator_tokens_per_second)
                    .ok()
                    .filter(|tps| *tps > 0)
                    .ok_or_else(|| corrupt("emulator tokens per second not positive"))?,
            },
            name: row.name,
            description: row.description,
            upstream_url: row.upstream_url,
            vertex_service_account_file: row.vertex_service_account_file,
            aws_region: row.aws_region,
            created_at: row.created_at.and_utc(),
        })
    }
}
