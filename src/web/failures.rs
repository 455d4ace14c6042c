//! The "Failure settings" form: the failure config as form fields (rates as percentages), and
//! back. The script is a list of rows named by position (`script_0_outcome`, …), edited by
//! the server (add, remove, move up) so the form works without scripts.

use std::collections::HashMap;

use super::script_rows::{self, RowAction, ScriptRowForm};
use crate::faults::{
    ConnectionFaultKind, ConnectionFaultsConfig, ErrorsConfig, FailureConfig, INJECTABLE_STATUSES,
    IpFilterConfig, RateLimitConfig, ResponseDelayConfig, ScriptEnd, Shorthand, StreamFaultKind,
    StreamFaultsConfig, TimeoutConfig, TimeoutMode,
};
use crate::validation::FieldError;

/// The form's fields by name, as typed.
#[derive(Debug, Default)]
pub struct FailureForm(HashMap<String, String>);

fn percent(rate: f64) -> String {
    let value = (rate * 1000.0).round() / 10.0;
    if value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn lines(entries: &[String]) -> String {
    entries.join("\n")
}

fn snake_case<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl FailureForm {
    pub fn from_fields(fields: HashMap<String, String>) -> Self {
        FailureForm(fields)
    }

    pub fn from_config(config: &FailureConfig) -> Self {
        let mut fields = HashMap::new();
        let mut set = |name: &str, value: String| {
            fields.insert(name.to_owned(), value);
        };
        let on = |flag: bool| if flag { "on".to_owned() } else { String::new() };
        set("timeout_enabled", on(config.timeout.enabled));
        set("timeout_rate", percent(config.timeout.rate));
        set("timeout_mode", snake_case(config.timeout.mode));
        set("timeout_seconds", config.timeout.seconds.to_string());
        set("errors_enabled", on(config.errors.enabled));
        for status in INJECTABLE_STATUSES {
            let rate = config.errors.rates.get(&status.to_string()).copied();
            set(
                &format!("errors_rate_{status}"),
                rate.map(percent).unwrap_or_default(),
            );
        }
        set(
            "errors_retry_after",
            config.errors.retry_after_seconds.to_string(),
        );
        set("ip_enabled", on(config.ip_filter.enabled));
        set("ip_allow", lines(&config.ip_filter.allow));
        set("ip_block", lines(&config.ip_filter.block));
        set("ip_trusted", lines(&config.ip_filter.trusted_proxies));
        set("rate_limit_enabled", on(config.rate_limit.enabled));
        set(
            "rate_limit_rpm",
            config.rate_limit.requests_per_minute.to_string(),
        );
        set("delay_enabled", on(config.response_delay.enabled));
        set("delay_min_ms", config.response_delay.min_ms.to_string());
        set("delay_max_ms", config.response_delay.max_ms.to_string());
        set("delay_hits_only", on(config.response_delay.cache_hits_only));
        let stream = &config.stream;
        set("stream_enabled", on(stream.enabled));
        set("stream_rate", percent(stream.rate));
        set("stream_kind", snake_case(stream.kind));
        set("stream_after_events", stream.after_events.to_string());
        set("stream_stall_seconds", stream.stall_seconds.to_string());
        set("stream_stall_hang", on(stream.stall_hang));
        set("stream_drip_ms", stream.drip_ms.to_string());
        let connection = &config.connection;
        set("connection_enabled", on(connection.enabled));
        set("connection_rate", percent(connection.rate));
        set("connection_kind", snake_case(connection.kind));
        set(
            "connection_truncate_after_bytes",
            connection.truncate_after_bytes.to_string(),
        );
        set(
            "connection_bandwidth",
            connection
                .bandwidth_bytes_per_second
                .map(|b| b.to_string())
                .unwrap_or_default(),
        );
        set("script_end", snake_case(config.script_end));
        for (name, shorthand) in [
            ("fail_first", config.fail_first),
            ("every_nth", config.every_nth),
        ] {
            set(
                &format!("{name}_count"),
                shorthand.map(|s| s.count.to_string()).unwrap_or_default(),
            );
            set(
                &format!("{name}_status"),
                shorthand.map_or(429, |s| s.status).to_string(),
            );
        }
        set("allow_request_faults", on(config.allow_request_faults));
        set(
            "seed",
            config.seed.map(|s| s.to_string()).unwrap_or_default(),
        );
        let mut form = FailureForm(fields);
        form.set_rows(&script_rows::rows_of(&config.script));
        form
    }

    /// The script's rows, in order.
    pub fn rows(&self) -> Vec<ScriptRowForm> {
        script_rows::rows_in(&self.0)
    }

    fn set_rows(&mut self, rows: &[ScriptRowForm]) {
        self.0.retain(|name, _| !script_rows::is_row_field(name));
        for (index, row) in rows.iter().enumerate() {
            self.0.extend(row.fields(index));
        }
    }

    /// The form after an add, remove or move-up button: nothing is saved.
    pub fn edit_rows(&mut self, action: RowAction) {
        let mut rows = self.rows();
        action.apply(&mut rows);
        self.set_rows(&rows);
    }

    pub fn is(&self, name: &str, value: &str) -> bool {
        self.value(name) == value
    }

    pub fn value(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.as_str())
    }

    pub fn checked(&self, name: &str) -> bool {
        !self.value(name).is_empty()
    }

    pub fn mode_is(&self, mode: &str) -> bool {
        self.value("timeout_mode") == mode
    }

    /// The config the form describes, or every field it cannot use.
    pub fn to_config(&self) -> Result<FailureConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let script = script_rows::steps_of(&self.rows(), &mut errors);
        let mut rate = |name: &str, field: String| -> f64 {
            match self.value(name).trim() {
                "" => 0.0,
                text => match text.trim_end_matches('%').parse::<f64>() {
                    Ok(value) if (0.0..=100.0).contains(&value) => value / 100.0,
                    _ => {
                        errors.push(FieldError::owned(
                            field,
                            "Enter a percentage from 0 to 100.",
                        ));
                        0.0
                    }
                },
            }
        };
        let timeout_rate = rate("timeout_rate", "timeout.rate".into());
        let stream_rate = rate("stream_rate", "stream.rate".into());
        let connection_rate = rate("connection_rate", "connection.rate".into());
        let error_rates: Vec<(u16, f64)> = INJECTABLE_STATUSES
            .iter()
            .map(|status| {
                (
                    *status,
                    rate(
                        &format!("errors_rate_{status}"),
                        format!("errors.rates.{status}"),
                    ),
                )
            })
            .collect();
        let mut number = |name: &str, field: &'static str, fallback: u64| -> u64 {
            match self.value(name).trim() {
                "" => fallback,
                text => text.parse().unwrap_or_else(|_| {
                    errors.push(FieldError::new(field, "Enter a whole number."));
                    fallback
                }),
            }
        };
        let retry_after = number("errors_retry_after", "errors.retry_after_seconds", 1);
        let rpm = number("rate_limit_rpm", "rate_limit.requests_per_minute", 60);
        let min_ms = number("delay_min_ms", "response_delay.min_ms", 0);
        let max_ms = number("delay_max_ms", "response_delay.max_ms", 0);
        let after_events = number("stream_after_events", "stream.after_events", 3);
        let drip_ms = number("stream_drip_ms", "stream.drip_ms", 200);
        let truncate_after_bytes = number(
            "connection_truncate_after_bytes",
            "connection.truncate_after_bytes",
            100,
        );
        let bandwidth = match self.value("connection_bandwidth").trim() {
            "" => None,
            _ => Some(number(
                "connection_bandwidth",
                "connection.bandwidth_bytes_per_second",
                0,
            )),
        };
        let mut shorthand = |name: &'static str| -> Option<Shorthand> {
            let count = match self.value(&format!("{name}_count")).trim() {
                "" => return None,
                text => text.parse().unwrap_or_else(|_| {
                    errors.push(FieldError::new(
                        name,
                        "Enter a whole number, or leave it empty.",
                    ));
                    0
                }),
            };
            let status = self
                .value(&format!("{name}_status"))
                .trim()
                .parse()
                .unwrap_or(429);
            Some(Shorthand { count, status })
        };
        let fail_first = shorthand("fail_first");
        let every_nth = shorthand("every_nth");
        let seed = match self.value("seed").trim() {
            "" => None,
            text => text.parse().map(Some).unwrap_or_else(|_| {
                errors.push(FieldError::new(
                    "seed",
                    "The seed is a whole number, or empty for random failures.",
                ));
                None
            }),
        };
        let mut seconds = |name: &str, field: &'static str, fallback: f64| -> f64 {
            match self.value(name).trim() {
                "" => fallback,
                text => text.parse::<f64>().unwrap_or_else(|_| {
                    errors.push(FieldError::new(field, "Enter a number of seconds."));
                    fallback
                }),
            }
        };
        let timeout_seconds = seconds("timeout_seconds", "timeout.seconds", 0.0);
        let stall_seconds = seconds("stream_stall_seconds", "stream.stall_seconds", 5.0);
        let mode = match self.value("timeout_mode") {
            "hang" => TimeoutMode::Hang,
            "gateway_timeout" => TimeoutMode::GatewayTimeout,
            _ => TimeoutMode::Delay,
        };
        let list = |name: &str| -> Vec<String> {
            self.value(name)
                .split(['\n', ','])
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let config = FailureConfig {
            timeout: TimeoutConfig {
                enabled: self.checked("timeout_enabled"),
                rate: timeout_rate,
                mode,
                seconds: timeout_seconds,
            },
            errors: ErrorsConfig {
                enabled: self.checked("errors_enabled"),
                rates: error_rates
                    .into_iter()
                    .filter(|(_, rate)| *rate > 0.0)
                    .map(|(status, rate)| (status.to_string(), rate))
                    .collect(),
                retry_after_seconds: retry_after,
            },
            ip_filter: IpFilterConfig {
                enabled: self.checked("ip_enabled"),
                allow: list("ip_allow"),
                block: list("ip_block"),
                trusted_proxies: list("ip_trusted"),
            },
            rate_limit: RateLimitConfig {
                enabled: self.checked("rate_limit_enabled"),
                requests_per_minute: u32::try_from(rpm).unwrap_or(u32::MAX),
            },
            response_delay: ResponseDelayConfig {
                enabled: self.checked("delay_enabled"),
                min_ms,
                max_ms,
                cache_hits_only: self.checked("delay_hits_only"),
            },
            stream: StreamFaultsConfig {
                enabled: self.checked("stream_enabled"),
                rate: stream_rate,
                kind: match self.value("stream_kind") {
                    "error" => StreamFaultKind::Error,
                    "stall" => StreamFaultKind::Stall,
                    "drip" => StreamFaultKind::Drip,
                    _ => StreamFaultKind::Disconnect,
                },
                after_events: u32::try_from(after_events).unwrap_or(u32::MAX),
                stall_seconds,
                stall_hang: self.checked("stream_stall_hang"),
                drip_ms,
            },
            connection: ConnectionFaultsConfig {
                enabled: self.checked("connection_enabled"),
                rate: connection_rate,
                kind: match self.value("connection_kind") {
                    "close_after_head" => ConnectionFaultKind::CloseAfterHead,
                    "truncate" => ConnectionFaultKind::Truncate,
                    _ => ConnectionFaultKind::Reset,
                },
                truncate_after_bytes,
                bandwidth_bytes_per_second: bandwidth,
            },
            script,
            script_end: if self.value("script_end") == "repeat" {
                ScriptEnd::Repeat
            } else {
                ScriptEnd::Pass
            },
            fail_first,
            every_nth,
            seed,
            allow_request_faults: self.checked("allow_request_faults"),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        config.validate().map_err(|error| {
            // The form speaks in percentages where the API speaks in fractions.
            if error.field == "errors.rates" {
                return vec![FieldError::new(
                    "errors.rates",
                    "Together the error rates can be at most 100%.",
                )];
            }
            vec![script_rows::row_error(error)]
        })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_survives_the_form() {
        let mut config = FailureConfig::default();
        config.errors.enabled = true;
        config.errors.rates.insert("429".into(), 0.2);
        config.errors.rates.insert("500".into(), 0.05);
        config.ip_filter.block = vec!["10.0.0.0/8".into(), "192.168.*.*".into()];
        config.timeout.mode = TimeoutMode::Hang;
        config.seed = Some(42);
        let form = FailureForm::from_config(&config);
        assert_eq!(form.value("errors_rate_429"), "20");
        assert_eq!(form.value("errors_rate_500"), "5");
        assert_eq!(form.to_config().ok(), Some(config));
    }

    #[test]
    fn percentages_out_of_range_are_named() {
        let mut fields = HashMap::new();
        fields.insert("errors_rate_429".to_owned(), "120".to_owned());
        fields.insert("timeout_seconds".to_owned(), "5".to_owned());
        let errors = FailureForm::from_fields(fields)
            .to_config()
            .err()
            .unwrap_or_default();
        assert_eq!(
            errors.first().map(|e| e.field.as_ref()),
            Some("errors.rates.429")
        );
    }
}
