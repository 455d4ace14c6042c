//! The script editor of the Failure settings form: one row per script step, its fields named by
//! position (`script_2_outcome`, `script_2_value`, `script_2_seconds`, `script_2_hang`,
//! `script_2_times`), and the errors of a row named `script[2].outcome|value|seconds|times`.

use std::collections::HashMap;

use crate::faults::{ConnectionKind, ScriptRow, ScriptStep, TimeoutMode};
use crate::validation::FieldError;

/// An outcome a row can pick, with what its value means.
pub struct OutcomeChoice {
    pub value: &'static str,
    pub label: &'static str,
}

pub const OUTCOMES: [OutcomeChoice; 14] = [
    OutcomeChoice {
        value: "pass",
        label: "Pass: forward as usual",
    },
    OutcomeChoice {
        value: "status",
        label: "Error status",
    },
    OutcomeChoice {
        value: "delay_ms",
        label: "Delay (ms), then carry on",
    },
    OutcomeChoice {
        value: "hang",
        label: "Hang: never answer",
    },
    OutcomeChoice {
        value: "gateway_timeout",
        label: "Wait (seconds), then 504",
    },
    OutcomeChoice {
        value: "stream_disconnect_after",
        label: "Stream: cut after N events",
    },
    OutcomeChoice {
        value: "stream_disconnect_after_bytes",
        label: "Stream: cut after N bytes",
    },
    OutcomeChoice {
        value: "stream_error_after",
        label: "Stream: error event after N",
    },
    OutcomeChoice {
        value: "stream_stall_after",
        label: "Stream: stall after N events",
    },
    OutcomeChoice {
        value: "stream_drip_ms",
        label: "Stream: one event per N ms",
    },
    OutcomeChoice {
        value: "reset",
        label: "Connection reset",
    },
    OutcomeChoice {
        value: "close_after_head",
        label: "Close after the head",
    },
    OutcomeChoice {
        value: "truncate_after_bytes",
        label: "Body cut after N bytes",
    },
    OutcomeChoice {
        value: "bandwidth_bytes_per_second",
        label: "Bandwidth (bytes/s)",
    },
];

/// One row as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptRowForm {
    pub outcome: String,
    pub value: String,
    pub seconds: String,
    pub hang: bool,
    pub times: String,
}

const COLUMNS: [&str; 5] = ["outcome", "value", "seconds", "hang", "times"];

impl ScriptRowForm {
    /// The row a new "Add row" gives: one 429.
    fn blank() -> Self {
        ScriptRowForm {
            outcome: "status".into(),
            value: "429".into(),
            ..ScriptRowForm::default()
        }
    }

    pub fn fields(&self, index: usize) -> impl Iterator<Item = (String, String)> + use<> {
        let values = [
            self.outcome.clone(),
            self.value.clone(),
            self.seconds.clone(),
            if self.hang {
                "on".into()
            } else {
                String::new()
            },
            self.times.clone(),
        ];
        COLUMNS
            .into_iter()
            .zip(values)
            .map(move |(column, value)| (format!("script_{index}_{column}"), value))
    }

    fn of(step: &ScriptStep) -> Self {
        let row = match step {
            ScriptStep::Pass => {
                return ScriptRowForm {
                    outcome: "pass".into(),
                    ..ScriptRowForm::default()
                };
            }
            ScriptStep::Row(row) => row,
        };
        let text = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
        let (outcome, value) = if row.pass.is_some() {
            ("pass", String::new())
        } else if let Some(status) = row.status {
            ("status", status.to_string())
        } else if let Some(ms) = row.delay_ms {
            ("delay_ms", ms.to_string())
        } else if let Some(mode) = row.timeout {
            let outcome = match mode {
                TimeoutMode::GatewayTimeout => "gateway_timeout",
                TimeoutMode::Hang | TimeoutMode::Delay => "hang",
            };
            (outcome, String::new())
        } else if let Some(events) = row.stream_disconnect_after {
            ("stream_disconnect_after", events.to_string())
        } else if row.stream_disconnect_after_bytes.is_some() {
            (
                "stream_disconnect_after_bytes",
                text(row.stream_disconnect_after_bytes),
            )
        } else if let Some(events) = row.stream_error_after {
            ("stream_error_after", events.to_string())
        } else if let Some(events) = row.stream_stall_after {
            ("stream_stall_after", events.to_string())
        } else if row.stream_drip_ms.is_some() {
            ("stream_drip_ms", text(row.stream_drip_ms))
        } else if let Some(kind) = row.connection {
            let outcome = match kind {
                ConnectionKind::Reset => "reset",
                ConnectionKind::CloseAfterHead => "close_after_head",
            };
            (outcome, String::new())
        } else if row.truncate_after_bytes.is_some() {
            ("truncate_after_bytes", text(row.truncate_after_bytes))
        } else {
            (
                "bandwidth_bytes_per_second",
                text(row.bandwidth_bytes_per_second),
            )
        };
        ScriptRowForm {
            outcome: outcome.into(),
            value,
            seconds: row.seconds.map(|s| s.to_string()).unwrap_or_default(),
            hang: row.hang.unwrap_or(false),
            times: row.times.map(|t| t.to_string()).unwrap_or_default(),
        }
    }

    /// The outcome's value box is used (a pass, a hang or a reset has none).
    pub fn takes_value(&self) -> bool {
        !matches!(
            self.outcome.as_str(),
            "pass" | "hang" | "gateway_timeout" | "reset" | "close_after_head"
        )
    }

    /// The step the row says, or its errors (pushed to `errors`, named by the row).
    fn step(&self, index: usize, errors: &mut Vec<FieldError>) -> Option<ScriptStep> {
        let row_number = index + 1;
        let mut refuse = |column: &str, message: &str| {
            errors.push(FieldError::owned(
                format!("script[{index}].{column}"),
                format!("Row {row_number}, {column}: {message}"),
            ));
        };
        let times = match self.times.trim() {
            "" => None,
            text => match text.parse::<u32>() {
                Ok(times) => Some(times),
                Err(_) => {
                    refuse("times", "enter a whole number of requests, 1 or more.");
                    return None;
                }
            },
        };
        let value = self.value.trim();
        let number = |refuse: &mut dyn FnMut(&str, &str), what: &str| -> Option<u64> {
            match value.parse::<u64>() {
                Ok(number) => Some(number),
                Err(_) if value.is_empty() => {
                    refuse("value", &format!("enter {what}."));
                    None
                }
                Err(_) => {
                    refuse("value", &format!("“{value}” is not {what}."));
                    None
                }
            }
        };
        let events = |refuse: &mut dyn FnMut(&str, &str)| {
            number(refuse, "a number of events").map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let seconds = match self.seconds.trim() {
            "" => None,
            text => match text.parse::<f64>() {
                Ok(seconds) => Some(seconds),
                Err(_) => {
                    refuse("seconds", &format!("“{text}” is not a number of seconds."));
                    return None;
                }
            },
        };
        let mut row = ScriptRow {
            times,
            ..ScriptRow::default()
        };
        match self.outcome.as_str() {
            "pass" if times.is_none_or(|t| t == 1) => return Some(ScriptStep::Pass),
            "pass" => row.pass = Some(true),
            "status" => {
                let status = number(&mut refuse, "a status code such as 429")?;
                row.status = Some(u16::try_from(status).unwrap_or(u16::MAX));
            }
            "delay_ms" => row.delay_ms = Some(number(&mut refuse, "a number of milliseconds")?),
            "hang" => row.timeout = Some(TimeoutMode::Hang),
            "gateway_timeout" => {
                row.timeout = Some(TimeoutMode::GatewayTimeout);
                row.seconds = seconds;
            }
            "stream_disconnect_after" => row.stream_disconnect_after = Some(events(&mut refuse)?),
            "stream_disconnect_after_bytes" => {
                row.stream_disconnect_after_bytes = Some(number(&mut refuse, "a number of bytes")?);
            }
            "stream_error_after" => row.stream_error_after = Some(events(&mut refuse)?),
            "stream_stall_after" => {
                row.stream_stall_after = Some(events(&mut refuse)?);
                row.seconds = seconds;
                row.hang = self.hang.then_some(true);
            }
            "stream_drip_ms" => {
                row.stream_drip_ms = Some(number(&mut refuse, "a number of milliseconds")?);
            }
            "reset" => row.connection = Some(ConnectionKind::Reset),
            "close_after_head" => row.connection = Some(ConnectionKind::CloseAfterHead),
            "truncate_after_bytes" => {
                row.truncate_after_bytes = Some(number(&mut refuse, "a number of bytes")?);
            }
            "bandwidth_bytes_per_second" => {
                row.bandwidth_bytes_per_second =
                    Some(number(&mut refuse, "a number of bytes per second")?);
            }
            other => {
                refuse("outcome", &format!("“{other}” is not an outcome."));
                return None;
            }
        }
        Some(ScriptStep::Row(row))
    }
}

/// A button of the script editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    Add,
    Remove(usize),
    MoveUp(usize),
}

impl RowAction {
    /// `add`, `remove-2` or `up-2`, as the buttons send it.
    pub fn parse(text: &str) -> Option<Self> {
        let index = |rest: &str| rest.parse::<usize>().ok();
        match text.split_once('-') {
            None if text == "add" => Some(RowAction::Add),
            Some(("remove", rest)) => index(rest).map(RowAction::Remove),
            Some(("up", rest)) => index(rest).map(RowAction::MoveUp),
            _ => None,
        }
    }

    pub fn apply(self, rows: &mut Vec<ScriptRowForm>) {
        match self {
            RowAction::Add => rows.push(ScriptRowForm::blank()),
            RowAction::Remove(index) if index < rows.len() => {
                rows.remove(index);
            }
            RowAction::MoveUp(index) if index > 0 && index < rows.len() => {
                rows.swap(index - 1, index);
            }
            RowAction::Remove(_) | RowAction::MoveUp(_) => {}
        }
    }
}

pub fn is_row_field(name: &str) -> bool {
    row_field(name).is_some()
}

/// `script_2_value` → (2, "value").
fn row_field(name: &str) -> Option<(usize, &str)> {
    let (index, column) = name.strip_prefix("script_")?.split_once('_')?;
    let index = index.parse().ok()?;
    COLUMNS.contains(&column).then_some((index, column))
}

/// The rows of a config's script, for the form.
pub fn rows_of(script: &[ScriptStep]) -> Vec<ScriptRowForm> {
    script.iter().map(ScriptRowForm::of).collect()
}

/// The rows a submitted form holds, in the order of their positions (gaps closed).
pub fn rows_in(fields: &HashMap<String, String>) -> Vec<ScriptRowForm> {
    let mut rows: std::collections::BTreeMap<usize, ScriptRowForm> = Default::default();
    for (name, value) in fields {
        let Some((index, column)) = row_field(name) else {
            continue;
        };
        let row = rows.entry(index).or_default();
        match column {
            "outcome" => row.outcome = value.clone(),
            "value" => row.value = value.clone(),
            "seconds" => row.seconds = value.clone(),
            "hang" => row.hang = !value.is_empty(),
            _ => row.times = value.clone(),
        }
    }
    rows.into_values()
        .filter(|row| !row.outcome.is_empty())
        .collect()
}

/// The script the rows say; what cannot be read is pushed to `errors`.
pub fn steps_of(rows: &[ScriptRowForm], errors: &mut Vec<FieldError>) -> Vec<ScriptStep> {
    rows.iter()
        .enumerate()
        .filter_map(|(index, row)| row.step(index, errors))
        .collect()
}

/// A validation error about a script row (`script[1].status`), named by the row's column and
/// its number as the page shows it; other errors pass unchanged.
pub fn row_error(error: FieldError) -> FieldError {
    let Some((index, column)) = error
        .field
        .strip_prefix("script[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, rest)| {
            let column = rest.strip_prefix('.').unwrap_or("outcome");
            Some((index.parse::<usize>().ok()?, column))
        })
    else {
        return error;
    };
    let column = match column {
        "times" | "seconds" | "hang" | "outcome" => column,
        "pass" => "outcome",
        _ => "value",
    };
    FieldError::owned(
        format!("script[{index}].{column}"),
        format!("Row {}: {}", index + 1, error.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(json: serde_json::Value) -> Vec<ScriptStep> {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn every_kind_of_row_survives_the_form() {
        let script = steps(serde_json::json!([
            "pass",
            {"pass": true, "times": 3},
            {"status": 429, "times": 2},
            {"delay_ms": 1500},
            {"timeout": "hang"},
            {"timeout": "gateway_timeout", "seconds": 2.5},
            {"stream_disconnect_after": 3},
            {"stream_disconnect_after_bytes": 120},
            {"stream_error_after": 2},
            {"stream_stall_after": 1, "seconds": 0.5},
            {"stream_stall_after": 4, "hang": true},
            {"stream_drip_ms": 150},
            {"connection": "reset"},
            {"connection": "close_after_head"},
            {"truncate_after_bytes": 40},
            {"bandwidth_bytes_per_second": 2048}
        ]));
        let rows = rows_of(&script);
        let fields: HashMap<String, String> = rows
            .iter()
            .enumerate()
            .flat_map(|(index, row)| row.fields(index))
            .collect();
        let mut errors = Vec::new();
        let back = steps_of(&rows_in(&fields), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back, script);
    }

    #[test]
    fn a_bad_row_is_named_by_its_number_and_column() {
        let rows = vec![
            ScriptRowForm {
                outcome: "status".into(),
                value: "429".into(),
                ..Default::default()
            },
            ScriptRowForm {
                outcome: "stream_error_after".into(),
                value: "three".into(),
                ..Default::default()
            },
            ScriptRowForm {
                outcome: "pass".into(),
                times: "-1".into(),
                ..Default::default()
            },
        ];
        let mut errors = Vec::new();
        steps_of(&rows, &mut errors);
        let named: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_ref(), e.message.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "script[1].value",
                    "Row 2, value: “three” is not a number of events."
                ),
                (
                    "script[2].times",
                    "Row 3, times: enter a whole number of requests, 1 or more."
                )
            ]
        );
        let validated = row_error(FieldError::new(
            "script[4].status",
            "600 is not a status that can be injected.",
        ));
        assert_eq!(validated.field, "script[4].value");
        assert_eq!(
            validated.message,
            "Row 5: 600 is not a status that can be injected."
        );
    }

    #[test]
    fn rows_are_added_removed_and_moved_up() {
        let row = |value: &str| ScriptRowForm {
            outcome: "status".into(),
            value: value.into(),
            ..Default::default()
        };
        let mut rows = vec![row("500"), row("503")];
        RowAction::parse("up-1").expect("parses").apply(&mut rows);
        assert_eq!(rows, [row("503"), row("500")]);
        RowAction::parse("remove-0")
            .expect("parses")
            .apply(&mut rows);
        RowAction::parse("add").expect("parses").apply(&mut rows);
        assert_eq!(rows, [row("500"), row("429")]);
        RowAction::parse("remove-9")
            .expect("parses")
            .apply(&mut rows);
        assert_eq!(rows.len(), 2);
        assert_eq!(RowAction::parse("drop-1"), None);
    }
}
