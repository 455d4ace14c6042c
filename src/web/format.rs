//! How pages print numbers, sizes, amounts and times: one place, so every page says it alike.

use chrono::NaiveDateTime;

/// A size in bytes, in binary units from a KiB up.
pub fn bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} bytes"),
    }
}

/// A latency as the pages print it: enough digits to tell a cache hit (tens of microseconds)
/// from a forwarded call, and no false precision on slow ones.
pub fn latency(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// A latency with its unit, or a dash when there is none (no requests yet).
pub fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| format!("{} ms", latency(ms)))
}

pub use crate::telemetry::{usd, usd_as_set};

/// An amount in US dollars with its sign.
pub fn cost(value: f64) -> String {
    format!("${}", usd(value))
}

/// A ratio (0 to 1) as a percentage to a tenth.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// Requests per minute, to a tenth.
pub fn per_minute(rate: f64) -> String {
    format!("{rate:.1}")
}

/// Input and output tokens as "in / out", a dash for the side a provider did not report; nothing
/// when neither was.
pub fn tokens(input: Option<i64>, output: Option<i64>) -> String {
    if input.is_none() && output.is_none() {
        return String::new();
    }
    let count = |value: Option<i64>| value.map_or_else(|| "–".to_owned(), |v| v.to_string());
    format!("{} / {}", count(input), count(output))
}

/// A time for people to read; stored times are UTC, and the page says so.
pub fn utc_time(time: NaiveDateTime) -> String {
    time.and_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Seconds since start as hours, minutes and seconds.
pub fn uptime(seconds: u64) -> String {
    format!(
        "{}h {:02}m {:02}s",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::latency as latency_text;

    #[test]
    fn latencies_keep_the_digits_that_matter() {
        assert_eq!(latency_text(0.0451), "0.045");
        assert_eq!(latency_text(2.46), "2.5");
        assert_eq!(latency_text(701.5), "702");
    }
}
