//! The request headers through which a test scopes and picks its own failures:
//! `X-Rubberduck-Scenario: <test id>` and, where the proxy allows it, `X-Rubberduck-Fault`.

use std::time::Duration;

use super::script::{ConnectionFault, Outcome, StreamFault};
use super::{INJECTABLE_STATUSES, TimeoutMode};

/// The test id whose own script position, dice and rate window a request uses.
pub const SCENARIO_HEADER: &str = "x-rubberduck-scenario";
/// One failure for this request alone, on proxies with `allow_request_faults`.
pub const FAULT_HEADER: &str = "x-rubberduck-fault";

const MAX_SCENARIO_CHARS: usize = 200;
const MAX_WAIT_SECONDS: f64 = 600.0;

/// The scenario a request's `X-Rubberduck-Scenario` value names; an error says what is wrong
/// with it.
pub fn scenario_of(value: Option<&[u8]>) -> Result<Option<String>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let id = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| format!("{SCENARIO_HEADER} must be printable ASCII"))?
        .trim();
    if id.is_empty() || id.chars().count() > MAX_SCENARIO_CHARS {
        return Err(format!(
            "{SCENARIO_HEADER} must name a test in 1 to {MAX_SCENARIO_CHARS} characters"
        ));
    }
    Ok(Some(id.to_owned()))
}

const FAULTS_HELP: &str = "a status (429), timeout, timeout=SECONDS, hang, delay=MS, \
disconnect-after=N, disconnect-after-bytes=N, error-event-after=N, stall-after=N (hangs) or \
stall-after=N;seconds=S, drip=MS, reset, close-after-head, truncate-after=BYTES, \
bandwidth=BYTES_PER_SECOND, pass";

/// Reads an `X-Rubberduck-Fault` value: `429`, `timeout`, `hang`, `disconnect-after=3`,
/// `error-event-after=2`, `stall-after=1;seconds=5`, … (see [`FAULTS_HELP`]).
pub fn parse_request_fault(value: &str) -> Result<Outcome, String> {
    let mut parts = value.split(';').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let (name, argument) = match head.split_once('=') {
        Some((name, argument)) => (name.trim(), Some(argument.trim())),
        None => (head, None),
    };
    let mut seconds = None;
    for part in parts {
        match part.split_once('=') {
            Some(("seconds", s)) => seconds = Some(number::<f64>(s.trim(), "seconds")?),
            _ => return Err(format!("“{part}” is not understood in {FAULT_HEADER}")),
        }
    }
    let count = |what: &str| -> Result<u64, String> {
        let argument = argument.ok_or_else(|| format!("{name} needs ={what}"))?;
        number::<u64>(argument, name)
    };
    let wait = |s: f64| -> Result<Duration, String> {
        if s.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&s) {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(format!("a wait is 0 to {MAX_WAIT_SECONDS} seconds"))
        }
    };
    let events = |what| -> Result<u32, String> {
        u32::try_from(count(what)?).map_err(|_| format!("{name} is too large"))
    };
    let outcome = match name {
        "pass" => Outcome::Pass,
        "timeout" => Outcome::Timeout {
            mode: TimeoutMode::GatewayTimeout,
            wait: wait(argument.map_or(Ok(0.0), |a| number::<f64>(a, name))?)?,
        },
        "hang" => Outcome::Timeout {
            mode: TimeoutMode::Hang,
            wait: Duration::ZERO,
        },
        "delay" => Outcome::Delay(wait(count("MS")? as f64 / 1000.0)?),
        "disconnect-after" => Outcome::Stream(StreamFault::Disconnect {
            after_events: events("N")?,
        }),
        "disconnect-after-bytes" => Outcome::Stream(StreamFault::DisconnectAfterBytes {
            after_bytes: count("BYTES")?.max(1),
        }),
        "error-event-after" => Outcome::Stream(StreamFault::ErrorEvent {
            after_events: events("N")?,
        }),
        "stall-after" => Outcome::Stream(StreamFault::Stall {
            after_events: events("N")?,
            wait: seconds.map_or(Ok(Duration::ZERO), wait)?,
            hang: seconds.is_none(),
        }),
        "drip" => Outcome::Stream(StreamFault::Drip {
            every: wait(count("MS")?.max(1) as f64 / 1000.0)?,
        }),
        "reset" => Outcome::Connection(ConnectionFault::Reset),
        "close-after-head" => Outcome::Connection(ConnectionFault::CloseAfterHead),
        "truncate-after" => Outcome::Connection(ConnectionFault::Truncate {
            after_bytes: count("BYTES")?,
        }),
        "bandwidth" => Outcome::Connection(ConnectionFault::Bandwidth {
            bytes_per_second: count("BYTES_PER_SECOND")?.max(1),
        }),
        status => match status.parse::<u16>() {
            Ok(code) if INJECTABLE_STATUSES.contains(&code) => Outcome::Status(code),
            _ => {
                return Err(format!(
                    "“{value}” is not a fault {FAULT_HEADER} knows; use {FAULTS_HELP}"
                ));
            }
        },
    };
    if seconds.is_some() && name != "stall-after" {
        return Err(format!("seconds= goes with stall-after in {FAULT_HEADER}"));
    }
    Ok(outcome)
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("“{text}” is not a number ({name} in {FAULT_HEADER})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_values_read_as_outcomes() {
        assert_eq!(parse_request_fault("429"), Ok(Outcome::Status(429)));
        assert_eq!(
            parse_request_fault("disconnect-after=3"),
            Ok(Outcome::Stream(StreamFault::Disconnect { after_events: 3 }))
        );
        assert_eq!(
            parse_request_fault("stall-after=1;seconds=2"),
            Ok(Outcome::Stream(StreamFault::Stall {
                after_events: 1,
                wait: Duration::from_secs(2),
                hang: false
            }))
        );
        assert_eq!(
            parse_request_fault("hang"),
            Ok(Outcome::Timeout {
                mode: TimeoutMode::Hang,
                wait: Duration::ZERO
            })
        );
        for bad in [
            "418",
            "explode",
            "disconnect-after",
            "disconnect-after=x",
            "429;seconds=1",
        ] {
            assert!(parse_request_fault(bad).is_err(), "{bad}");
        }
    }
}
