//! Failure simulation: the per-proxy failure config, its validation, and the decisions the
//! pipeline takes for each request (in pipeline order: IP filter, rate limit, timeout, injected
//! error, response delay; then faults inside the stream and at the connection).
//!
//! Rates roll seeded dice; a script names each request's outcome in turn. Both keep their
//! state (dice, script position, rate-limit window) per scenario: a test that sends
//! `X-Rubberduck-Scenario` has its own, as if it were alone on the proxy.

mod ip;
mod request;
mod scenario;
mod script;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::forwarded;
use crate::validation::FieldError;
use ip::IpRule;
pub use request::{FAULT_HEADER, SCENARIO_HEADER, parse_request_fault, scenario_of};
pub use scenario::{ActiveScenario, SCENARIO_IDLE};
use scenario::{Dice, Scenarios};
pub use script::{
    ConnectionFault, ConnectionKind, MAX_SCRIPT_REQUESTS, Outcome, Script, ScriptEnd, ScriptRow,
    ScriptStep, Shorthand, StreamFault,
};

/// Status codes that can be injected: what LLM providers really answer.
pub const INJECTABLE_STATUSES: [u16; 11] = [400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 529];
const MAX_DELAY_SECONDS: f64 = 30.0;
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutMode {
    /// Wait, then carry on normally.
    Delay,
    /// Never answer: ends when the client gives up or the proxy stops.
    Hang,
    /// Wait, then answer 504.
    GatewayTimeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    pub enabled: bool,
    pub rate: f64,
    pub mode: TimeoutMode,
    pub seconds: f64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            enabled: false,
            rate: 0.0,
            mode: TimeoutMode::Delay,
            seconds: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorsConfig {
    pub enabled: bool,
    /// Status code (as text, JSON keys are strings) → probability.
    pub rates: BTreeMap<String, f64>,
    pub retry_after_seconds: u64,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            enabled: false,
            rates: BTreeMap::new(),
            retry_after_seconds: 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpFilterConfig {
    pub enabled: bool,
    pub allow: Vec<String>,
    pub block: Vec<String>,
    /// Peers allowed to name the client in `X-Forwarded-For` (reverse proxies in front).
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub requests_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            requests_per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseDelayConfig {
    pub enabled: bool,
    pub min_ms: u64,
    pub max_ms: u64,
    pub cache_hits_only: bool,
}

impl Default for ResponseDelayConfig {
    fn default() -> Self {
        ResponseDelayConfig {
            enabled: false,
            min_ms: 500,
            max_ms: 2000,
            cache_hits_only: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFaultKind {
    Disconnect,
    Error,
    Stall,
    Drip,
}

/// Faults inside streamed answers, at a rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamFaultsConfig {
    pub enabled: bool,
    pub rate: f64,
    pub kind: StreamFaultKind,
    /// Events let through before a disconnect, an error event or a stall.
    pub after_events: u32,
    pub stall_seconds: f64,
    /// A stall that lasts until the client gives up.
    pub stall_hang: bool,
    pub drip_ms: u64,
}

impl Default for StreamFaultsConfig {
    fn default() -> Self {
        StreamFaultsConfig {
            enabled: false,
            rate: 0.0,
            kind: StreamFaultKind::Disconnect,
            after_events: 3,
            stall_seconds: 5.0,
            stall_hang: false,
            drip_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionFaultKind {
    Reset,
    CloseAfterHead,
    Truncate,
}

/// Breakage at the connection, at a rate; and a bandwidth limit on every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionFaultsConfig {
    pub enabled: bool,
    pub rate: f64,
    pub kind: ConnectionFaultKind,
    pub truncate_after_bytes: u64,
    pub bandwidth_bytes_per_second: Option<u64>,
}

impl Default for ConnectionFaultsConfig {
    fn default() -> Self {
        ConnectionFaultsConfig {
            enabled: false,
            rate: 0.0,
            kind: ConnectionFaultKind::Reset,
            truncate_after_bytes: 100,
            bandwidth_bytes_per_second: None,
        }
    }
}

/// The failure config of the admin API (`GET|PUT /api/proxies/{id}/failure-config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureConfig {
    pub timeout: TimeoutConfig,
    pub errors: ErrorsConfig,
    pub ip_filter: IpFilterConfig,
    pub rate_limit: RateLimitConfig,
    pub response_delay: ResponseDelayConfig,
    pub stream: StreamFaultsConfig,
    pub connection: ConnectionFaultsConfig,
    /// One outcome per request, in order (per scenario).
    pub script: Vec<ScriptStep>,
    pub script_end: ScriptEnd,
    /// Shorthand for a script: the first N requests fail.
    pub fail_first: Option<Shorthand>,
    /// Shorthand for a script: every K-th request fails.
    pub every_nth: Option<Shorthand>,
    pub seed: Option<u64>,
    /// Whether a request's `X-Rubberduck-Fault` header picks its own failure (else it is
    /// ignored, and stripped like every `X-Rubberduck-*` header).
    pub allow_request_faults: bool,
}

impl FailureConfig {
    /// Reads a config from JSON, naming the offending field of a malformed one.
    pub fn from_json(json: serde_json::Value) -> Result<Self, FieldError> {
        serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            FieldError::owned(field, e.into_inner().to_string())
        })
    }

    /// The kinds that are switched on, for cards.
    pub fn active_kinds(&self) -> Vec<&'static str> {
        [
            (self.ip_filter.enabled, "IP filter"),
            (self.rate_limit.enabled, "rate limit"),
            (self.timeout.enabled, "timeouts"),
            (self.errors.enabled, "errors"),
            (self.response_delay.enabled, "delay"),
            (self.stream.enabled, "stream faults"),
            (self.connection.enabled, "connection faults"),
            (self.has_script(), "script"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    pub fn has_script(&self) -> bool {
        !self.script.is_empty() || self.fail_first.is_some() || self.every_nth.is_some()
    }

    /// The script this config says, validated.
    pub fn script(&self) -> Result<Script, FieldError> {
        Script::build(
            &self.script,
            self.script_end,
            self.fail_first,
            self.every_nth,
        )
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        let rate = |field: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(FieldError::owned(
                    field.to_owned(),
                    format!("{field} must be between 0 and 1, got {value}."),
                ))
            }
        };
        rate("timeout.rate", self.timeout.rate)?;
        if !(0.0..=MAX_DELAY_SECONDS).contains(&self.timeout.seconds) {
            return Err(FieldError::new(
                "timeout.seconds",
                format!("timeout.seconds must be between 0 and {MAX_DELAY_SECONDS}."),
            ));
        }
        let mut total = 0.0;
        for (code, value) in &self.errors.rates {
            let field = format!("errors.rates.{code}");
            if code
                .parse::<u16>()
                .ok()
                .is_none_or(|c| !INJECTABLE_STATUSES.contains(&c))
            {
                return Err(FieldError::owned(
                    field,
                    format!(
                        "{code} is not a status that can be injected; use one of {}.",
                        INJECTABLE_STATUSES.map(|s| s.to_string()).join(", ")
                    ),
                ));
            }
            rate(&field, *value)?;
            total += value;
        }
        if total > 1.0 + 1e-9 {
            return Err(FieldError::new(
                "errors.rates",
                format!("The error rates add up to {total:.3}; together they can be at most 1."),
            ));
        }
        if self.errors.retry_after_seconds > 3600 {
            return Err(FieldError::new(
                "errors.retry_after_seconds",
                "errors.retry_after_seconds can be at most 3600.",
            ));
        }
        for (field, entries) in [
            ("ip_filter.allow", &self.ip_filter.allow),
            ("ip_filter.block", &self.ip_filter.block),
            ("ip_filter.trusted_proxies", &self.ip_filter.trusted_proxies),
        ] {
            if let Some(bad) = entries.iter().find(|e| IpRule::parse(e).is_none()) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "“{bad}” is not an IP address, a CIDR block (10.0.0.0/8) or a wildcard (192.168.*.*)."
                    ),
                ));
            }
        }
        if self.rate_limit.requests_per_minute == 0 {
            return Err(FieldError::new(
                "rate_limit.requests_per_minute",
                "rate_limit.requests_per_minute must be at least 1.",
            ));
        }
        let delay = &self.response_delay;
        if delay.max_ms > 30_000 {
            return Err(FieldError::new(
                "response_delay.max_ms",
                "response_delay.max_ms can be at most 30000 (30 s).",
            ));
        }
        if delay.min_ms > delay.max_ms {
            return Err(FieldError::new(
                "response_delay.min_ms",
                "response_delay.min_ms cannot be larger than max_ms.",
            ));
        }
        rate("stream.rate", self.stream.rate)?;
        if !(0.0..=600.0).contains(&self.stream.stall_seconds) {
            return Err(FieldError::new(
                "stream.stall_seconds",
                "stream.stall_seconds must be between 0 and 600.",
            ));
        }
        if !(1..=60_000).contains(&self.stream.drip_ms) {
            return Err(FieldError::new(
                "stream.drip_ms",
                "stream.drip_ms must be between 1 and 60000.",
            ));
        }
        rate("connection.rate", self.connection.rate)?;
        if self.connection.bandwidth_bytes_per_second == Some(0) {
            return Err(FieldError::new(
                "connection.bandwidth_bytes_per_second",
                "connection.bandwidth_bytes_per_second must be at least 1 (or null for no limit).",
            ));
        }
        self.script().map(|_| ())
    }

    /// The rate-based stream fault, when it is picked.
    fn stream_fault(&self) -> StreamFault {
        let stream = &self.stream;
        match stream.kind {
            StreamFaultKind::Disconnect => StreamFault::Disconnect {
                after_events: stream.after_events,
            },
            StreamFaultKind::Error => StreamFault::ErrorEvent {
                after_events: stream.after_events,
            },
            StreamFaultKind::Stall => StreamFault::Stall {
                after_events: stream.after_events,
                wait: Duration::from_secs_f64(stream.stall_seconds),
                hang: stream.stall_hang,
            },
            StreamFaultKind::Drip => StreamFault::Drip {
                every: Duration::from_millis(stream.drip_ms),
            },
        }
    }

    /// The rate-based connection fault, when it is picked.
    fn connection_fault(&self) -> ConnectionFault {
        match self.connection.kind {
            ConnectionFaultKind::Reset => ConnectionFault::Reset,
            ConnectionFaultKind::CloseAfterHead => ConnectionFault::CloseAfterHead,
            ConnectionFaultKind::Truncate => ConnectionFault::Truncate {
                after_bytes: self.connection.truncate_after_bytes,
            },
        }
    }
}

/// What the pipeline must do with one request, decided up front.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    IpBlocked,
    RateLimited {
        retry_after_seconds: u64,
    },
    Timeout {
        mode: TimeoutMode,
        wait: Duration,
    },
    Error {
        status: u16,
        retry_after_seconds: u64,
    },
}

impl Injection {
    /// The failure kind as logs and the `X-Rubberduck-Injected` header name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Injection::IpBlocked => "ip_blocked",
            Injection::RateLimited { .. } => "rate_limited",
            Injection::Timeout { .. } => "timeout",
            Injection::Error { .. } => "error_injection",
        }
    }
}

/// The dice (or the script) of one request that passed the IP filter and the rate limit:
/// whether it times out, fails, waits before its answer, or breaks inside its stream or at its
/// connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decision {
    /// A `delay` timeout waits and carries on; the other modes are failures.
    pub timeout: Option<Injection>,
    pub stall: Option<Duration>,
    pub error: Option<Injection>,
    pub response_delay: Option<Duration>,
    pub delay_hits_only: bool,
    pub stream: Option<StreamFault>,
    pub connection: Option<ConnectionFault>,
}

impl StreamFault {
    /// The failure kind as logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamFault::Disconnect { .. } | StreamFault::DisconnectAfterBytes { .. } => {
                "stream_disconnect"
            }
            StreamFault::ErrorEvent { .. } => "stream_error",
            StreamFault::Stall { .. } => "stream_stall",
            StreamFault::Drip { .. } => "stream_drip",
        }
    }
}

impl ConnectionFault {
    /// The failure kind as logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionFault::Reset => "connection_reset",
            ConnectionFault::CloseAfterHead => "connection_closed",
            ConnectionFault::Truncate { .. } => "truncated",
            ConnectionFault::Bandwidth { .. } => "bandwidth",
        }
    }
}

/// A validated config with the state its decisions need. Replaced whole on every save, which
/// restarts seeded sequences, scripts and rate-limit windows (of every scenario).
pub struct Faults {
    config: FailureConfig,
    script: Script,
    allow: Vec<IpRule>,
    block: Vec<IpRule>,
    trusted: Vec<IpRule>,
    /// Cumulative probabilities, for one roll to pick a status.
    error_table: Vec<(f64, u16)>,
    scenarios: Scenarios,
}

fn rules(entries: &[String]) -> Vec<IpRule> {
    entries.iter().filter_map(|e| IpRule::parse(e)).collect()
}

impl Faults {
    /// Builds from a config that passed [`FailureConfig::validate`].
    pub fn new(config: FailureConfig) -> Self {
        let mut cumulative = 0.0;
        let error_table = config
            .errors
            .rates
            .iter()
            .filter_map(|(code, rate)| {
                cumulative += rate;
                Some((cumulative, code.parse().ok()?))
            })
            .collect();
        let seed = config.seed;
        Faults {
            allow: rules(&config.ip_filter.allow),
            block: rules(&config.ip_filter.block),
            trusted: rules(&config.ip_filter.trusted_proxies),
            error_table,
            script: config.script().unwrap_or_default(),
            scenarios: Scenarios::new(move || match seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_os_rng(),
            }),
            config,
        }
    }

    /// The scenarios (test ids) that sent requests lately, most recent first.
    pub fn active_scenarios(&self) -> Vec<ActiveScenario> {
        self.scenarios.active()
    }

    /// Forgets a scenario: its next request starts the script, the dice and the window afresh.
    /// False when it was not known.
    pub fn reset_scenario(&self, id: &str) -> bool {
        self.scenarios.reset(id)
    }

    pub fn config(&self) -> &FailureConfig {
        &self.config
    }

    /// Read for every request: no list is built.
    pub fn is_active(&self) -> bool {
        let config = &self.config;
        config.ip_filter.enabled
            || config.rate_limit.enabled
            || config.timeout.enabled
            || config.errors.enabled
            || config.response_delay.enabled
            || config.stream.enabled
            || config.connection.enabled
            || !self.script.is_empty()
    }

    /// The client as the filter sees it: the socket peer, or, when the peer is a trusted
    /// reverse proxy (this proxy's own list, or `also_trusted`: the ones trusted everywhere),
    /// the nearest untrusted address in `X-Forwarded-For`.
    pub fn client_ip(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        also_trusted: impl Fn(IpAddr) -> bool,
    ) -> IpAddr {
        forwarded::client_ip(peer, forwarded_for, |ip| {
            also_trusted(ip) || self.trusted.iter().any(|r| r.matches(ip))
        })
    }

    /// `IpBlocked` when the IP filter is on and `client` is blocked or not allowed.
    pub fn filter_ip(&self, client: IpAddr) -> Option<Injection> {
        if !self.config.ip_filter.enabled {
            return None;
        }
        let blocked = self.block.iter().any(|r| r.matches(client));
        let allowed = self.allow.is_empty() || self.allow.iter().any(|r| r.matches(client));
        (blocked || !allowed).then_some(Injection::IpBlocked)
    }

    /// `RateLimited` when the rate limit is on and the scenario's window is full; otherwise
    /// the request is counted in it.
    pub fn limit_rate(&self, now: Instant, scenario: Option<&str>) -> Option<Injection> {
        if !self.config.rate_limit.enabled {
            return None;
        }
        let limit = self.config.rate_limit.requests_per_minute as usize;
        let retry_after_seconds = self.scenarios.with(scenario, |dice| {
            over_rate_limit(&mut dice.admitted, limit, now)
        })?;
        Some(Injection::RateLimited {
            retry_after_seconds,
        })
    }

    /// Decides one request: the scenario's next script outcome, or the one `requested` (the
    /// `X-Rubberduck-Fault` header) in its place; the rates decide when that is to pass.
    pub fn roll(&self, scenario: Option<&str>, requested: Option<Outcome>) -> Decision {
        let script = &self.script;
        // Every request takes the same draws, so a seeded sequence does not depend on which
        // kinds are switched on.
        let (rolls, scripted) = self.scenarios.with(scenario, |dice: &mut Dice| {
            let rolls: [f64; 5] = std::array::from_fn(|_| dice.rng.random::<f64>());
            let scripted = (!script.is_empty()).then(|| {
                let outcome = script.outcome(dice.position);
                dice.position += 1;
                outcome
            });
            (rolls, scripted)
        });
        let mut decision = self.roll_rates(rolls);
        match requested.or(scripted) {
            None | Some(Outcome::Pass) => decision,
            Some(outcome) => {
                let response_delay = decision.response_delay;
                decision = Decision {
                    response_delay,
                    delay_hits_only: decision.delay_hits_only,
                    ..Decision::default()
                };
                self.apply(&mut decision, outcome);
                decision
            }
        }
    }

    fn apply(&self, decision: &mut Decision, outcome: Outcome) {
        match outcome {
            Outcome::Pass => {}
            Outcome::Status(status) => {
                decision.error = Some(Injection::Error {
                    status,
                    retry_after_seconds: self.config.errors.retry_after_seconds,
                });
            }
            Outcome::Delay(wait) => decision.stall = Some(wait),
            Outcome::Timeout { mode, wait } => {
                decision.timeout = Some(Injection::Timeout { mode, wait });
            }
            Outcome::Stream(fault) => decision.stream = Some(fault),
            Outcome::Connection(fault) => decision.connection = Some(fault),
        }
    }

    /// What the rates decide with this request's draws.
    fn roll_rates(&self, rolls: [f64; 5]) -> Decision {
        let config = &self.config;
        let [
            timeout_roll,
            error_roll,
            delay_roll,
            stream_roll,
            connection_roll,
        ] = rolls;
        let mut decision = Decision::default();
        if config.stream.enabled && stream_roll < config.stream.rate {
            decision.stream = Some(config.stream_fault());
        }
        if config.connection.enabled {
            if connection_roll < config.connection.rate {
                decision.connection = Some(config.connection_fault());
            } else if let Some(bytes_per_second) = config.connection.bandwidth_bytes_per_second {
                decision.connection = Some(ConnectionFault::Bandwidth { bytes_per_second });
            }
        }
        if config.response_delay.enabled {
            let delay = &config.response_delay;
            let span = (delay.max_ms - delay.min_ms) as f64;
            decision.response_delay = Some(Duration::from_millis(
                delay.min_ms + (span * delay_roll).round() as u64,
            ));
            decision.delay_hits_only = delay.cache_hits_only;
        }
        if config.timeout.enabled && timeout_roll < config.timeout.rate {
            let wait = Duration::from_secs_f64(config.timeout.seconds);
            match config.timeout.mode {
                TimeoutMode::Delay => decision.stall = Some(wait),
                mode => {
                    decision.timeout = Some(Injection::Timeout { mode, wait });
                    return decision;
                }
            }
        }
        if config.errors.enabled
            && let Some((_, status)) = self.error_table.iter().find(|(edge, _)| error_roll < *edge)
        {
            decision.error = Some(Injection::Error {
                status: *status,
                retry_after_seconds: config.errors.retry_after_seconds,
            });
        }
        decision
    }
}

/// `None` when the request fits in the sliding window (and is counted), else the seconds until
/// a slot frees.
fn over_rate_limit(admitted: &mut VecDeque<Instant>, limit: usize, now: Instant) -> Option<u64> {
    while admitted
        .front()
        .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
    {
        admitted.pop_front();
    }
    if admitted.len() < limit {
        admitted.push_back(now);
        return None;
    }
    let oldest = admitted.front().copied().unwrap_or(now);
    let free_in = RATE_WINDOW.saturating_sub(now.duration_since(oldest));
    Some(free_in.as_secs_f64().ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn config(json: serde_json::Value) -> FailureConfig {
        let config = FailureConfig::from_json(json).expect("parses");
        config.validate().expect("valid");
        config
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let config = FailureConfig::from_json(serde_json::json!({})).expect("empty is defaults");
        assert_eq!(config, FailureConfig::default());
        assert!(!Faults::new(config).is_active());
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |json| {
            FailureConfig::from_json(json)
                .and_then(|c| c.validate().map(|()| c))
                .err()
                .map(|e| e.field.to_string())
        };
        assert_eq!(
            field(serde_json::json!({"timeout": {"rate": 1.5}})).as_deref(),
            Some("timeout.rate")
        );
        assert_eq!(
            field(serde_json::json!({"errors": {"rates": {"418": 0.1}}})).as_deref(),
            Some("errors.rates.418")
        );
        assert_eq!(
            field(serde_json::json!({"errors": {"rates": {"429": 0.7, "500": 0.5}}})).as_deref(),
            Some("errors.rates")
        );
        assert_eq!(
            field(serde_json::json!({"ip_filter": {"block": ["10.0.0.0/33"]}})).as_deref(),
            Some("ip_filter.block")
        );
        assert_eq!(
            field(serde_json::json!({"response_delay": {"min_ms": 5, "max_ms": 1}})).as_deref(),
            Some("response_delay.min_ms")
        );
        assert_eq!(
            field(serde_json::json!({"timeout": {"mode": "nap"}})).as_deref(),
            Some("timeout.mode")
        );
        assert_eq!(
            field(serde_json::json!({"colour": 1})).as_deref(),
            Some("colour"),
            "unknown keys are named"
        );
    }

    #[test]
    fn the_rate_window_slides() {
        let faults = Faults::new(config(
            serde_json::json!({"rate_limit": {"enabled": true, "requests_per_minute": 2}}),
        ));
        let start = Instant::now();
        assert_eq!(faults.limit_rate(start, None), None);
        assert_eq!(
            faults.limit_rate(start + Duration::from_secs(30), None),
            None
        );
        assert_eq!(
            faults.limit_rate(start + Duration::from_secs(59), None),
            Some(Injection::RateLimited {
                retry_after_seconds: 1
            })
        );
        assert_eq!(
            faults.limit_rate(start + Duration::from_secs(60), None),
            None,
            "the first slot freed"
        );
        assert!(
            faults
                .limit_rate(start + Duration::from_secs(61), None)
                .is_some(),
            "no burst at the boundary"
        );
    }

    #[test]
    fn a_seed_makes_the_sequence_repeat() {
        let json = serde_json::json!({"errors": {"enabled": true, "rates": {"429": 0.3, "500": 0.2}}, "seed": 7});
        let run = || {
            let faults = Faults::new(config(json.clone()));
            (0..50)
                .map(|_| faults.roll(None, None).error)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().any(Option::is_some) && first.iter().any(Option::is_none));
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let faults = Faults::new(config(
            serde_json::json!({"ip_filter": {"trusted_proxies": ["127.0.0.1"]}}),
        ));
        let client: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(
            faults.client_ip(LOCAL, Some("198.51.100.1, 203.0.113.9"), |_| false),
            client
        );
        let untrusted: IpAddr = "10.9.9.9".parse().expect("ip");
        assert_eq!(
            faults.client_ip(untrusted, Some("203.0.113.9"), |_| false),
            untrusted
        );
        assert_eq!(
            faults.client_ip(untrusted, Some("203.0.113.9"), |ip| ip == untrusted),
            "203.0.113.9".parse::<IpAddr>().expect("ip"),
            "trusted everywhere"
        );
    }
}
