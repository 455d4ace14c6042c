//! Scripted failures: an ordered list of outcomes a proxy (or one test's scenario) goes through
//! request by request, and the faults an outcome can be besides a status: inside a stream, or at
//! the connection.

use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::{INJECTABLE_STATUSES, TimeoutMode};
use crate::validation::FieldError;

/// More rows than this (with their `times`) are refused: a script is written by hand.
pub const MAX_SCRIPT_REQUESTS: u64 = 100_000;
const MAX_WAIT_SECONDS: f64 = 600.0;

/// What happens inside a streamed answer, counted in whole events (SSE events, event-stream
/// frames) so that what the client got before the fault is exactly what the upstream sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamFault {
    /// The connection closes after this many events.
    Disconnect { after_events: u32 },
    /// The connection closes after this many bytes of the body.
    DisconnectAfterBytes { after_bytes: u64 },
    /// The provider's own mid-stream error event after this many events, and the end.
    ErrorEvent { after_events: u32 },
    /// Nothing for `wait` after this many events; then the rest, unless `hang`: then nothing
    /// until the client gives up.
    Stall {
        after_events: u32,
        wait: Duration,
        hang: bool,
    },
    /// Events released at most one per `every`.
    Drip { every: Duration },
}

/// Breakage at the HTTP connection, as a network or a failing load balancer does it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConnectionFault {
    /// The connection is reset (TCP RST) before any response.
    Reset,
    /// The response head is sent, then the connection closes.
    CloseAfterHead,
    /// The body stops after this many bytes and the connection closes.
    Truncate { after_bytes: u64 },
    /// The body goes out at most this fast.
    Bandwidth { bytes_per_second: u64 },
}

/// One request's scripted outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Pass,
    Status(u16),
    /// Waits, then carries on.
    Delay(Duration),
    Timeout {
        mode: TimeoutMode,
        wait: Duration,
    },
    Stream(StreamFault),
    Connection(ConnectionFault),
}

/// What happens once a script has run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptEnd {
    /// Every later request passes.
    #[default]
    Pass,
    /// The script starts again.
    Repeat,
}

/// A row of a script as the API and the config file write it: `"pass"`, or an object naming
/// one outcome, with `times` to repeat it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRow {
    /// `{"pass": true, "times": 3}`: like `"pass"`, for several requests at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `hang` or `gateway_timeout`, after `seconds` (the latter only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_disconnect_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_disconnect_after_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_stall_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_drip_ms: Option<u64>,
    /// `reset` or `close_after_head`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate_after_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_second: Option<u64>,
    /// How long a stall or a gateway timeout waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// A stall that never ends (until the client gives up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    Reset,
    CloseAfterHead,
}

/// A script row: `"pass"` or a [`ScriptRow`].
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    Pass,
    Row(ScriptRow),
}

impl Serialize for ScriptStep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ScriptStep::Pass => serializer.serialize_str("pass"),
            ScriptStep::Row(row) => row.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ScriptStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = ScriptStep;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""pass" or an outcome such as {"status": 429}"#)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ScriptStep, E> {
                match value {
                    "pass" => Ok(ScriptStep::Pass),
                    other => Err(E::custom(format!(
                        r#"“{other}” is not an outcome; write "pass" or an object such as {{"status": 429}}"#
                    ))),
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ScriptStep, M::Error> {
                ScriptRow::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ScriptStep::Row)
            }
        }
        deserializer.deserialize_any(StepVisitor)
    }
}

/// `fail_first` and `every_nth`: a count alone (the status is 429), or with a status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shorthand {
    pub count: u32,
    pub status: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShorthandFields {
    count: u32,
    #[serde(default = "rate_limited")]
    status: u16,
}

fn rate_limited() -> u16 {
    429
}

impl Serialize for Shorthand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("count", &self.count)?;
        map.serialize_entry("status", &self.status)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Shorthand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShorthandVisitor;
        impl<'de> Visitor<'de> for ShorthandVisitor {
            type Value = Shorthand;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a count, or {"count": N, "status": S}"#)
            }
            fn visit_u64<E: de::Error>(self, count: u64) -> Result<Shorthand, E> {
                let count =
                    u32::try_from(count).map_err(|_| E::custom("the count is too large"))?;
                Ok(Shorthand {
                    count,
                    status: rate_limited(),
                })
            }
            fn visit_i64<E: de::Error>(self, count: i64) -> Result<Shorthand, E> {
                let count =
                    u64::try_from(count).map_err(|_| E::custom("the count cannot be negative"))?;
                self.visit_u64(count)
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Shorthand, M::Error> {
                ShorthandFields::deserialize(de::value::MapAccessDeserializer::new(map)).map(
                    |fields| Shorthand {
                        count: fields.count,
                        status: fields.status,
                    },
                )
            }
        }
        deserializer.deserialize_any(ShorthandVisitor)
    }
}

/// A script ready to be followed: one outcome per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    outcomes: Vec<Outcome>,
    end: ScriptEnd,
}

impl Script {
    /// The `n`-th (0-based) request's outcome.
    pub fn outcome(&self, n: u64) -> Outcome {
        let len = self.outcomes.len() as u64;
        if len == 0 {
            return Outcome::Pass;
        }
        let index = match self.end {
            ScriptEnd::Pass if n >= len => return Outcome::Pass,
            ScriptEnd::Pass => n,
            ScriptEnd::Repeat => n % len,
        };
        usize::try_from(index)
            .ok()
            .and_then(|i| self.outcomes.get(i))
            .copied()
            .unwrap_or(Outcome::Pass)
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The script `script`, `fail_first` or `every_nth` say, validated; at most one of them.
    pub fn build(
        script: &[ScriptStep],
        end: ScriptEnd,
        fail_first: Option<Shorthand>,
        every_nth: Option<Shorthand>,
    ) -> Result<Script, FieldError> {
        let given = [
            !script.is_empty(),
            fail_first.is_some(),
            every_nth.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            let field = if fail_first.is_some() && !script.is_empty() {
                "fail_first"
            } else {
                "every_nth"
            };
            return Err(FieldError::new(
                field,
                "Use one of script, fail_first and every_nth: they all say which requests fail.",
            ));
        }
        if let Some(shorthand) = fail_first {
            check_status("fail_first.status", shorthand.status)?;
            if shorthand.count == 0 || u64::from(shorthand.count) > MAX_SCRIPT_REQUESTS {
                return Err(FieldError::owned(
                    "fail_first".into(),
                    format!("fail_first must be between 1 and {MAX_SCRIPT_REQUESTS}."),
                ));
            }
            return Ok(Script {
                outcomes: vec![Outcome::Status(shorthand.status); shorthand.count as usize],
                end: ScriptEnd::Pass,
            });
        }
        if let Some(shorthand) = every_nth {
            check_status("every_nth.status", shorthand.status)?;
            if !(2..=10_000).contains(&shorthand.count) {
                return Err(FieldError::new(
                    "every_nth",
                    "every_nth must be between 2 and 10000 (every_nth: 3 fails requests 3, 6, 9, …).",
                ));
            }
            let mut outcomes = vec![Outcome::Pass; shorthand.count as usize - 1];
            outcomes.push(Outcome::Status(shorthand.status));
            return Ok(Script {
                outcomes,
                end: ScriptEnd::Repeat,
            });
        }
        let mut outcomes = Vec::new();
        for (index, step) in script.iter().enumerate() {
            let (outcome, times) = match step {
                ScriptStep::Pass => (Outcome::Pass, 1),
                ScriptStep::Row(row) => row_outcome(index, row)?,
            };
            if outcomes.len() as u64 + u64::from(times) > MAX_SCRIPT_REQUESTS {
                return Err(FieldError::owned(
                    format!("script[{index}].times"),
                    format!("A script covers at most {MAX_SCRIPT_REQUESTS} requests."),
                ));
            }
            outcomes.extend(std::iter::repeat_n(outcome, times as usize));
        }
        Ok(Script { outcomes, end })
    }
}

fn check_status(field: &str, status: u16) -> Result<(), FieldError> {
    if INJECTABLE_STATUSES.contains(&status) {
        return Ok(());
    }
    Err(FieldError::owned(
        field.to_owned(),
        format!(
            "{status} is not a status that can be injected; use one of {}.",
            INJECTABLE_STATUSES.map(|s| s.to_string()).join(", ")
        ),
    ))
}

fn wait_of(field: String, seconds: f64) -> Result<Duration, FieldError> {
    if seconds.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&seconds) {
        return Ok(Duration::from_secs_f64(seconds));
    }
    Err(FieldError::owned(
        field.clone(),
        format!("{field} must be between 0 and {MAX_WAIT_SECONDS} seconds."),
    ))
}

/// A row's outcome and how many requests it covers; the field named in an error is the row's.
fn row_outcome(index: usize, row: &ScriptRow) -> Result<(Outcome, u32), FieldError> {
    let field = |name: &str| format!("script[{index}].{name}");
    let kinds = [
        ("pass", row.pass.is_some()),
        ("status", row.status.is_some()),
        ("delay_ms", row.delay_ms.is_some()),
        ("timeout", row.timeout.is_some()),
        (
            "stream_disconnect_after",
            row.stream_disconnect_after.is_some(),
        ),
        (
            "stream_disconnect_after_bytes",
            row.stream_disconnect_after_bytes.is_some(),
        ),
        ("stream_error_after", row.stream_error_after.is_some()),
        ("stream_stall_after", row.stream_stall_after.is_some()),
        ("stream_drip_ms", row.stream_drip_ms.is_some()),
        ("connection", row.connection.is_some()),
        ("truncate_after_bytes", row.truncate_after_bytes.is_some()),
        (
            "bandwidth_bytes_per_second",
            row.bandwidth_bytes_per_second.is_some(),
        ),
    ];
    let named: Vec<&str> = kinds
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    let kind = match named.as_slice() {
        [one] => *one,
        [] => {
            return Err(FieldError::owned(
                format!("script[{index}]"),
                format!(
                    "script[{index}] names no outcome; write \"pass\" or one of {}.",
                    kinds.map(|(n, _)| n).join(", ")
                ),
            ));
        }
        [_, second, ..] => {
            return Err(FieldError::owned(
                field(second),
                format!(
                    "script[{index}] names two outcomes ({}); one row is one outcome.",
                    named.join(", ")
                ),
            ));
        }
    };
    let times = row.times.unwrap_or(1);
    if times == 0 {
        return Err(FieldError::owned(
            field("times"),
            format!("script[{index}].times must be at least 1."),
        ));
    }
    if row.seconds.is_some() && !matches!(kind, "stream_stall_after" | "timeout") {
        return Err(FieldError::owned(
            field("seconds"),
            format!("script[{index}].seconds goes with stream_stall_after or timeout."),
        ));
    }
    if row.hang.is_some() && kind != "stream_stall_after" {
        return Err(FieldError::owned(
            field("hang"),
            format!("script[{index}].hang goes with stream_stall_after."),
        ));
    }
    let positive = |name: &str, value: u64| {
        if value == 0 {
            Err(FieldError::owned(
                field(name),
                format!("script[{index}].{name} must be at least 1."),
            ))
        } else {
            Ok(())
        }
    };
    let outcome = match kind {
        "pass" if row.pass == Some(false) => {
            return Err(FieldError::owned(
                field("pass"),
                format!("script[{index}].pass is true (or leave the row out)."),
            ));
        }
        "pass" => Outcome::Pass,
        "status" => {
            let status = row.status.unwrap_or_default();
            check_status(&field("status"), status)?;
            Outcome::Status(status)
        }
        "delay_ms" => {
            let ms = row.delay_ms.unwrap_or_default();
            Outcome::Delay(wait_of(field("delay_ms"), ms as f64 / 1000.0)?)
        }
        "timeout" => {
            let mode = row.timeout.unwrap_or(TimeoutMode::Hang);
            if mode == TimeoutMode::Delay {
                return Err(FieldError::owned(
                    field("timeout"),
                    format!(
                        "script[{index}].timeout is hang or gateway_timeout; for a wait that carries on, use delay_ms."
                    ),
                ));
            }
            let wait = wait_of(field("seconds"), row.seconds.unwrap_or(0.0))?;
            Outcome::Timeout { mode, wait }
        }
        "stream_disconnect_after" => Outcome::Stream(StreamFault::Disconnect {
            after_events: row.stream_disconnect_after.unwrap_or_default(),
        }),
        "stream_disconnect_after_bytes" => {
            let after_bytes = row.stream_disconnect_after_bytes.unwrap_or_default();
            positive("stream_disconnect_after_bytes", after_bytes)?;
            Outcome::Stream(StreamFault::DisconnectAfterBytes { after_bytes })
        }
        "stream_error_after" => Outcome::Stream(StreamFault::ErrorEvent {
            after_events: row.stream_error_after.unwrap_or_default(),
        }),
        "stream_stall_after" => {
            let hang = row.hang.unwrap_or(false);
            let wait = match (row.seconds, hang) {
                (Some(seconds), _) => wait_of(field("seconds"), seconds)?,
                (None, true) => Duration::ZERO,
                (None, false) => {
                    return Err(FieldError::owned(
                        field("seconds"),
                        format!(
                            "script[{index}] stalls: say for how many seconds, or \"hang\": true."
                        ),
                    ));
                }
            };
            Outcome::Stream(StreamFault::Stall {
                after_events: row.stream_stall_after.unwrap_or_default(),
                wait,
                hang,
            })
        }
        "stream_drip_ms" => {
            let ms = row.stream_drip_ms.unwrap_or_default();
            positive("stream_drip_ms", ms)?;
            Outcome::Stream(StreamFault::Drip {
                every: wait_of(field("stream_drip_ms"), ms as f64 / 1000.0)?,
            })
        }
        "connection" => Outcome::Connection(match row.connection {
            Some(ConnectionKind::CloseAfterHead) => ConnectionFault::CloseAfterHead,
            _ => ConnectionFault::Reset,
        }),
        "truncate_after_bytes" => Outcome::Connection(ConnectionFault::Truncate {
            after_bytes: row.truncate_after_bytes.unwrap_or_default(),
        }),
        _ => {
            let bytes_per_second = row.bandwidth_bytes_per_second.unwrap_or_default();
            positive("bandwidth_bytes_per_second", bytes_per_second)?;
            Outcome::Connection(ConnectionFault::Bandwidth { bytes_per_second })
        }
    };
    Ok((outcome, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(json: serde_json::Value) -> Vec<ScriptStep> {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn rows_expand_with_times_and_the_end_says_what_follows() {
        let script = Script::build(
            &steps(serde_json::json!([{"status": 500, "times": 2}, "pass", {"stream_disconnect_after": 3}])),
            ScriptEnd::Pass,
            None,
            None,
        )
        .expect("valid");
        let seen: Vec<Outcome> = (0..6).map(|n| script.outcome(n)).collect();
        let disconnect = Outcome::Stream(StreamFault::Disconnect { after_events: 3 });
        assert_eq!(
            seen,
            [
                Outcome::Status(500),
                Outcome::Status(500),
                Outcome::Pass,
                disconnect,
                Outcome::Pass,
                Outcome::Pass
            ]
        );
        let repeating = Script::build(
            &steps(serde_json::json!([{"status": 429}, "pass"])),
            ScriptEnd::Repeat,
            None,
            None,
        )
        .expect("valid");
        assert_eq!(repeating.outcome(4), Outcome::Status(429));
        assert_eq!(repeating.outcome(5), Outcome::Pass);
    }

    #[test]
    fn a_pass_row_may_cover_several_requests() {
        let script = Script::build(
            &steps(serde_json::json!([{"pass": true, "times": 2}, {"status": 503}])),
            ScriptEnd::Pass,
            None,
            None,
        )
        .expect("valid");
        let seen: Vec<Outcome> = (0..3).map(|n| script.outcome(n)).collect();
        assert_eq!(seen, [Outcome::Pass, Outcome::Pass, Outcome::Status(503)]);
        let refused = Script::build(
            &steps(serde_json::json!(["pass", {"pass": false}])),
            ScriptEnd::Pass,
            None,
            None,
        );
        assert_eq!(
            refused.err().map(|e| e.field.into_owned()),
            Some("script[1].pass".to_owned())
        );
    }

    #[test]
    fn shorthands_are_scripts() {
        let first = Script::build(
            &[],
            ScriptEnd::Pass,
            Some(Shorthand {
                count: 2,
                status: 429,
            }),
            None,
        )
        .expect("valid");
        assert_eq!(
            (0..3).map(|n| first.outcome(n)).collect::<Vec<_>>(),
            [Outcome::Status(429), Outcome::Status(429), Outcome::Pass]
        );
        let nth = Script::build(
            &[],
            ScriptEnd::Pass,
            None,
            Some(Shorthand {
                count: 3,
                status: 503,
            }),
        )
        .expect("valid");
        let failing: Vec<u64> = (0..9)
            .filter(|n| nth.outcome(*n) != Outcome::Pass)
            .map(|n| n + 1)
            .collect();
        assert_eq!(failing, [3, 6, 9]);
    }

    #[test]
    fn bad_rows_name_row_and_field() {
        let field = |json| {
            Script::build(&steps(json), ScriptEnd::Pass, None, None)
                .err()
                .map(|e| e.field.to_string())
        };
        assert_eq!(
            field(serde_json::json!(["pass", {"status": 418}])).as_deref(),
            Some("script[1].status")
        );
        assert_eq!(
            field(serde_json::json!([{"status": 429, "times": 0}])).as_deref(),
            Some("script[0].times")
        );
        assert_eq!(
            field(serde_json::json!([{"status": 429, "delay_ms": 5}])).as_deref(),
            Some("script[0].delay_ms")
        );
        assert_eq!(
            field(serde_json::json!([{"times": 2}])).as_deref(),
            Some("script[0]")
        );
        assert_eq!(
            field(serde_json::json!([{"stream_stall_after": 2}])).as_deref(),
            Some("script[0].seconds")
        );
        assert_eq!(
            field(serde_json::json!([{"status": 500, "times": 100_001}])).as_deref(),
            Some("script[0].times")
        );
    }
}
