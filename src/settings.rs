//! Settings an admin changes in the dashboard. They live in the `settings` table and in memory;
//! readers take the current value without touching the database.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cache::CacheBudget;
use crate::db::{self, DbError, DbPool};
use crate::forwarded::{self, TrustedProxies};
use crate::reach::{AllowedUpstreams, MemberUpstreams};
use crate::validation::FieldError;

const MAX_SESSION_HOURS: u32 = 24 * 365;
const MAX_RETENTION_DAYS: u32 = 3650;
const MAX_TRUSTED_PROXIES: usize = 50;
const MAX_MEMBER_UPSTREAMS: usize = 100;
/// The largest cache budget accepted: 16 TiB.
const MAX_CACHE_BUDGET: u64 = 16 << 40;
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemSettings {
    /// Whether anyone who reaches the login page may create a member account.
    pub self_registration: bool,
    /// A session ends after this long without a request.
    pub session_idle_hours: u32,
    /// How many proxies a member may own; 0 means no limit. Admins are never limited.
    pub max_proxies_per_user: u32,
    /// Request logs older than this are purged daily; 0 keeps them forever.
    pub log_retention_days: u32,
    /// Where proxy ports listen; applies to each proxy at its next start.
    pub proxy_host: IpAddr,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Hosts and networks members' proxies may reach besides public addresses.
    pub member_upstreams: AllowedUpstreams,
    /// Bytes of cached answers all proxies together keep on disk; 0 means no limit.
    pub cache_total_bytes: u64,
    /// Bytes of cached answers each proxy keeps on disk; 0 means no limit.
    pub cache_proxy_bytes: u64,
}

impl SystemSettings {
    /// The settings of a fresh install: sign-up closed, a working day's sessions, a month of logs.
    pub fn defaults(proxy_host: IpAddr) -> Self {
        SystemSettings {
            self_registration: false,
            session_idle_hours: 24,
            max_proxies_per_user: 0,
            log_retention_days: 30,
            proxy_host,
            trusted_proxies: Vec::new(),
            member_upstreams: AllowedUpstreams::default(),
            cache_total_bytes: 1024 * MIB,
            cache_proxy_bytes: 256 * MIB,
        }
    }

    pub fn cache_budget(&self) -> CacheBudget {
        CacheBudget {
            total_bytes: self.cache_total_bytes,
            per_proxy_bytes: self.cache_proxy_bytes,
        }
    }

    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_idle_hours) * 3600)
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// The client's address: the socket peer, or behind a trusted reverse proxy the nearest
    /// untrusted address in `X-Forwarded-For`.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        forwarded::client_ip(peer, forwarded_for, |ip| self.trusts(ip))
    }
}

impl Default for SystemSettings {
    fn default() -> Self {
        SystemSettings::defaults(IpAddr::from([127, 0, 0, 1]))
    }
}

/// The settings form as submitted: text fields, checkboxes present only when ticked.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub self_registration: Option<String>,
    #[serde(default)]
    pub session_idle_hours: String,
    #[serde(default)]
    pub max_proxies_per_user: String,
    #[serde(default)]
    pub log_retention_days: String,
    #[serde(default)]
    pub proxy_host: String,
    #[serde(default)]
    pub trusted_proxies: String,
    #[serde(default)]
    pub member_upstreams: String,
    /// Absent from a post: the budget stays as it was (see [`SettingsForm::keep_missing`]).
    #[serde(default)]
    pub cache_total_budget: Option<String>,
    #[serde(default)]
    pub cache_proxy_budget: Option<String>,
}

impl SettingsForm {
    pub fn from_settings(settings: &SystemSettings) -> Self {
        SettingsForm {
            self_registration: settings.self_registration.then(|| "on".to_owned()),
            session_idle_hours: settings.session_idle_hours.to_string(),
            max_proxies_per_user: settings.max_proxies_per_user.to_string(),
            log_retention_days: settings.log_retention_days.to_string(),
            proxy_host: settings.proxy_host.to_string(),
            trusted_proxies: settings
                .trusted_proxies
                .iter()
                .map(network_text)
                .collect::<Vec<_>>()
                .join("\n"),
            member_upstreams: settings
                .member_upstreams
                .hosts
                .iter()
                .cloned()
                .chain(settings.member_upstreams.networks.iter().map(network_text))
                .collect::<Vec<_>>()
                .join("\n"),
            cache_total_budget: Some(size_text(settings.cache_total_bytes)),
            cache_proxy_budget: Some(size_text(settings.cache_proxy_bytes)),
        }
    }

    /// Fills the fields a post left out with the current values, so a client that does not know
    /// a newer setting leaves it alone.
    pub fn keep_missing(&mut self, current: &SystemSettings) {
        if self.cache_total_budget.is_none() {
            self.cache_total_budget = Some(size_text(current.cache_total_bytes));
        }
        if self.cache_proxy_budget.is_none() {
            self.cache_proxy_budget = Some(size_text(current.cache_proxy_bytes));
        }
    }

    pub fn validate(&self) -> Result<SystemSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut number =
            |field: &'static str, text: &str, min: u32, max: u32, what: &str| match text
                .trim()
                .parse::<u32>()
            {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        field,
                        format!("{what} must be a whole number from {min} to {max}."),
                    ));
                    0
                }
            };
        let session_idle_hours = number(
            "session_idle_hours",
            &self.session_idle_hours,
            1,
            MAX_SESSION_HOURS,
            "Session lifetime",
        );
        let max_proxies_per_user = number(
            "max_proxies_per_user",
            &self.max_proxies_per_user,
            0,
            10_000,
            "Proxies per user",
        );
        let log_retention_days = number(
            "log_retention_days",
            &self.log_retention_days,
            0,
            MAX_RETENTION_DAYS,
            "Log retention",
        );
        let defaults = SystemSettings::default();
        let mut budget = |field: &'static str, text: &Option<String>, default: u64, what: &str| {
            let Some(text) = text else {
                return default;
            };
            match parse_size(text) {
                Some(bytes) if bytes <= MAX_CACHE_BUDGET => bytes,
                _ => {
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "{what} must be a size such as 512 MB, 2 GB or 64 KB (a plain number \
                             is MB), at most 16384 GB; 0 means no limit."
                        ),
                    ));
                    default
                }
            }
        };
        let cache_total_bytes = budget(
            "cache_total_budget",
            &self.cache_total_budget,
            defaults.cache_total_bytes,
            "The total cache budget",
        );
        let cache_proxy_bytes = budget(
            "cache_proxy_budget",
            &self.cache_proxy_budget,
            defaults.cache_proxy_bytes,
            "The cache budget per proxy",
        );
        let proxy_host = match self.proxy_host.trim().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                errors.push(FieldError::new(
                    "proxy_host",
                    "Proxy bind host must be an IP address such as 127.0.0.1 or 0.0.0.0.",
                ));
                IpAddr::from([127, 0, 0, 1])
            }
        };
        let mut trusted_proxies = Vec::new();
        for entry in self
            .trusted_proxies
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => {
                    errors.push(FieldError::new(
                        "trusted_proxies",
                        format!("“{entry}” is not an IP address or CIDR range such as 10.0.0.0/8."),
                    ));
                    break;
                }
            }
        }
        if trusted_proxies.len() > MAX_TRUSTED_PROXIES {
            errors.push(FieldError::new(
                "trusted_proxies",
                format!("At most {MAX_TRUSTED_PROXIES} trusted proxies."),
            ));
        }
        let member_upstreams = match member_upstreams(&self.member_upstreams) {
            Ok(allowed) => allowed,
            Err(error) => {
                errors.push(error);
                AllowedUpstreams::default()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SystemSettings {
            self_registration: self.self_registration.is_some(),
            session_idle_hours,
            max_proxies_per_user,
            log_retention_days,
            proxy_host,
            trusted_proxies,
            member_upstreams,
            cache_total_bytes,
            cache_proxy_bytes,
        })
    }
}

/// Units of the size fields; binary, as the dashboard prints sizes (1 MB = 1024 KB).
const SIZE_UNITS: [(&str, u64); 4] = [("GB", 1 << 30), ("MB", MIB), ("KB", 1 << 10), ("B", 1)];

/// A size as the form shows it: the largest unit that says it exactly (`256 MB`, `1500 B`).
fn size_text(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    SIZE_UNITS
        .iter()
        .find(|(_, unit)| bytes.is_multiple_of(*unit))
        .map_or_else(
            || format!("{bytes} B"),
            |(name, unit)| format!("{} {name}", bytes / unit),
        )
}

/// A size as typed: a number, maybe with decimals, then B, KB, MB, GB (or KiB, MiB, GiB; any
/// case); no unit means MB.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_uppercase().replace("IB", "B");
    let multiplier = match unit.as_str() {
        "" => MIB,
        "K" => 1 << 10,
        "M" => MIB,
        "G" => 1 << 30,
        other => SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == other)
            .map(|(_, unit)| *unit)?,
    };
    if number.is_empty() {
        return None;
    }
    match number.split_once('.') {
        None => number.parse::<u64>().ok()?.checked_mul(multiplier),
        Some((whole, fraction)) => {
            let value: f64 = format!("{}.{fraction}", if whole.is_empty() { "0" } else { whole })
                .parse()
                .ok()?;
            let bytes = (value * multiplier as f64).round();
            (bytes.is_finite() && bytes < MAX_CACHE_BUDGET as f64 * 2.0).then_some(bytes as u64)
        }
    }
}

/// A network as typed: a single address without its `/32`.
fn network_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// The member upstreams field: one host name, address or CIDR range per line (or comma).
fn member_upstreams(text: &str) -> Result<AllowedUpstreams, FieldError> {
    let mut allowed = AllowedUpstreams::default();
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if let Ok(net) = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        {
            allowed.networks.push(net);
        } else if is_host_name(entry) {
            allowed
                .hosts
                .push(entry.trim_end_matches('.').to_ascii_lowercase());
        } else {
            return Err(FieldError::new(
                "member_upstreams",
                format!(
                    "“{entry}” is not a host name, an IP address or a CIDR range such as 10.0.0.0/8."
                ),
            ));
        }
    }
    if allowed.hosts.len() + allowed.networks.len() > MAX_MEMBER_UPSTREAMS {
        return Err(FieldError::new(
            "member_upstreams",
            format!("At most {MAX_MEMBER_UPSTREAMS} member upstreams."),
        ));
    }
    Ok(allowed)
}

/// Letters, digits and hyphens in dot-separated labels (`llm.corp.example`).
fn is_host_name(text: &str) -> bool {
    let name = text.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The current settings, shared by the dashboard and the background jobs.
pub struct Settings {
    db: DbPool,
    current: ArcSwap<SystemSettings>,
    /// `current.trusted_proxies` as the proxy servers read it, swapped with every save.
    trusted_proxies: Arc<TrustedProxies>,
    /// `current.member_upstreams` as the proxy servers read it, swapped with every save.
    member_upstreams: Arc<MemberUpstreams>,
}

impl Settings {
    /// Loads what was saved; anything never saved keeps its default.
    pub async fn load(db: DbPool, defaults: SystemSettings) -> Result<Self, DbError> {
        let saved = db::run(&db, db::settings::all).await?;
        let mut merged = serde_json::to_value(&defaults)
            .map_err(|e| DbError::Corrupt(format!("settings: {e}")))?;
        for (key, value) in saved {
            match serde_json::from_str::<serde_json::Value>(&value) {
                Ok(value) => merged[key] = value,
                Err(e) => log::warn!("ignoring the saved setting {key}: {e}"),
            }
        }
        let current = serde_json::from_value::<SystemSettings>(merged).unwrap_or_else(|e| {
            log::warn!("saved settings are not valid ({e}); using the defaults");
            defaults
        });
        Ok(Settings {
            db,
            trusted_proxies: Arc::new(TrustedProxies::new(current.trusted_proxies.clone())),
            member_upstreams: Arc::new(MemberUpstreams::new(current.member_upstreams.clone())),
            current: ArcSwap::from_pointee(current),
        })
    }

    pub fn get(&self) -> Arc<SystemSettings> {
        self.current.load_full()
    }

    /// The reverse proxies trusted everywhere, kept current by [`Settings::save`].
    pub fn trusted_proxies(&self) -> Arc<TrustedProxies> {
        Arc::clone(&self.trusted_proxies)
    }

    /// What members' proxies may reach besides public addresses, kept current by
    /// [`Settings::save`].
    pub fn member_upstreams(&self) -> Arc<MemberUpstreams> {
        Arc::clone(&self.member_upstreams)
    }

    pub async fn save(&self, settings: SystemSettings) -> Result<(), DbError> {
        let values: Vec<(String, String)> = match serde_json::to_value(&settings) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect(),
            _ => return Err(DbError::Corrupt("settings are not an object".into())),
        };
        db::run(&self.db, move |conn| db::settings::save(conn, &values)).await?;
        self.trusted_proxies
            .replace(settings.trusted_proxies.clone());
        self.member_upstreams
            .replace(settings.member_upstreams.clone());
        self.current.store(Arc::new(settings));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SettingsForm {
        SettingsForm::from_settings(&SystemSettings::default())
    }

    #[test]
    fn the_form_of_the_defaults_validates_to_the_defaults() {
        assert_eq!(form().validate(), Ok(SystemSettings::default()));
    }

    #[test]
    fn bad_values_are_named() {
        let mut bad = form();
        bad.session_idle_hours = "0".into();
        bad.proxy_host = "devbox".into();
        bad.trusted_proxies = "10.0.0.0/8\nnot-an-ip".into();
        let fields: Vec<_> = bad
            .validate()
            .expect_err("invalid")
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["session_idle_hours", "proxy_host", "trusted_proxies"]
        );
    }

    #[test]
    fn cache_budgets_take_sizes_with_units_and_say_what_is_wrong() {
        assert_eq!(parse_size("256"), Some(256 << 20));
        assert_eq!(parse_size(" 1 GB "), Some(1 << 30));
        assert_eq!(parse_size("1.5mb"), Some(3 << 19));
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(parse_size("1500 B"), Some(1500));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "MB", "-1", "1e3", "2 TB", "1.2.3 MB", "ten"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        for bytes in [0, 1500, 64 << 10, 256 << 20, 1 << 30, 3 << 19] {
            assert_eq!(parse_size(&size_text(bytes)), Some(bytes), "{bytes}");
        }
        let mut bad = form();
        bad.cache_total_budget = Some("lots".into());
        bad.cache_proxy_budget = Some("20000 GB".into());
        let errors = bad.validate().expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_ref()).collect();
        assert_eq!(fields, ["cache_total_budget", "cache_proxy_budget"]);

        let current = SystemSettings {
            cache_proxy_bytes: 3 << 20,
            ..SystemSettings::default()
        };
        let mut old_client = SettingsForm {
            cache_total_budget: Some("2 GB".into()),
            cache_proxy_budget: None,
            ..form()
        };
        old_client.keep_missing(&current);
        let saved = old_client.validate().expect("valid");
        assert_eq!(saved.cache_total_bytes, 2 << 30);
        assert_eq!(saved.cache_proxy_bytes, 3 << 20, "left alone");
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let settings = SystemSettings {
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..SystemSettings::default()
        };
        let proxy: IpAddr = "10.1.1.1".parse().expect("ip");
        let outsider: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(
            settings.client_ip(proxy, Some("198.51.100.4, 10.2.2.2")),
            "198.51.100.4".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(settings.client_ip(outsider, Some("198.51.100.4")), outsider);
    }
}
