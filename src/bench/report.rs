//! The benchmark's results, compared with the targets of issue 8, as a plain table or as
//! Markdown for BENCHMARKS.md. Both render the same sections.

use std::fmt;

use super::system::{Machine, Memory};
use crate::loadtest::{Report, Summary};

/// CPU used during a phase, in percent of one core.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub server: f64,
    pub generator: f64,
    pub upstream: f64,
}

impl Usage {
    /// From two readings of CPU seconds, `seconds` apart.
    pub fn since(&self, before: &Usage, seconds: f64) -> Usage {
        let percent = |now: f64, then: f64| {
            if seconds > 0.0 {
                (now - then) / seconds * 100.0
            } else {
                0.0
            }
        };
        Usage {
            server: percent(self.server, before.server),
            generator: percent(self.generator, before.generator),
            upstream: percent(self.upstream, before.upstream),
        }
    }
}

pub struct Phase {
    pub label: &'static str,
    pub report: Report,
    pub usage: Usage,
    /// Writes the server lost during the phase (its warm-up included).
    pub dropped: u64,
}

impl Phase {
    /// The label without the section it belongs to ("latency, direct" → "direct").
    fn row(&self) -> String {
        self.label
            .split_once(", ")
            .map_or(self.label, |(_, row)| row)
            .to_owned()
    }

    fn latency(&self) -> Option<&Summary> {
        self.report.latency_ms.as_ref()
    }

    fn ttfb(&self) -> Option<&Summary> {
        self.report.ttfb_ms.as_ref()
    }
}

pub struct Results {
    pub machine: Machine,
    pub date: String,
    pub requests: u64,
    pub duration_seconds: f64,
    pub connections: usize,
    pub stream_requests: u64,
    pub warmup: u64,
    pub quick: bool,
    /// Direct, proxy with cache off, proxy answering from cache.
    pub latency: [Phase; 3],
    /// Direct, proxy with cache off, proxy answering from cache, proxy with cache and request
    /// log off.
    pub throughput: [Phase; 4],
    /// Requests per second of the cache-off proxy with its request log on and off, taking
    /// turns.
    pub log_rounds: Vec<(f64, f64)>,
    pub log_round_seconds: f64,
    /// Direct, proxy with cache off.
    pub streaming: [Phase; 2],
    /// Counted by the cache-hit proxy over the whole run.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub idle_proxies: usize,
    /// Just started, no proxies yet.
    pub fresh: Memory,
    pub idle: Memory,
    pub after: Memory,
    pub total_seconds: f64,
    /// Writes the server lost over the whole run, as its `/metrics` counts them.
    pub dropped: u64,
}

struct Section {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    note: Option<String>,
}

/// One target of issue 8 and whether this run met it.
struct Goal {
    name: &'static str,
    target: &'static str,
    measured: String,
    met: Option<bool>,
}

const IDLE_RSS_TARGET_MIB: f64 = 30.0;

impl Results {
    fn added(&self, proxied: usize, pick: fn(&Summary) -> f64) -> Option<f64> {
        let direct = self.latency[0].latency()?;
        Some(pick(self.latency[proxied].latency()?) - pick(direct))
    }

    fn ttfb_overhead(&self, pick: fn(&Summary) -> f64) -> Option<f64> {
        Some(pick(self.streaming[1].ttfb()?) - pick(self.streaming[0].ttfb()?))
    }

    fn throughput_ratio(&self, proxied: usize) -> Option<f64> {
        let direct = self.throughput[0].report.requests_per_second;
        (direct > 0.0).then(|| self.throughput[proxied].report.requests_per_second / direct)
    }

    /// How much lower throughput is with the request log on than off (cache off both times):
    /// the median over the rounds.
    fn log_cost(&self) -> Option<f64> {
        median(
            self.log_rounds
                .iter()
                .filter(|(_, off)| *off > 0.0)
                .map(|(on, off)| 1.0 - on / off)
                .collect(),
        )
    }

    fn goals(&self) -> Vec<Goal> {
        let ms = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:+.3} ms"));
        let ratio = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.2}×"));
        let p50 = self.added(1, |s| s.p50);
        let p99 = self.added(1, |s| s.p99);
        let off = self.throughput_ratio(1);
        let hit = self.throughput_ratio(2);
        let log_cost = self.log_cost();
        let ttfb = self.ttfb_overhead(|s| s.p50);
        let idle = mib(self.idle.rss_kib);
        vec![
            Goal {
                name: "added latency p50, 1 connection, cache off",
                target: "≤ 0.2 ms",
                measured: ms(p50),
                met: p50.map(|v| v <= 0.2),
            },
            Goal {
                name: "added latency p99, 1 connection, cache off",
                target: "≤ 1 ms",
                measured: ms(p99),
                met: p99.map(|v| v <= 1.0),
            },
            Goal {
                name: "throughput, cache off, vs direct",
                target: "≥ 0.5×",
                measured: ratio(off),
                met: off.map(|v| v >= 0.5),
            },
            Goal {
                name: "throughput, cache hits, vs direct",
                target: "≥ 1×",
                measured: ratio(hit),
                met: hit.map(|v| v >= 1.0),
            },
            Goal {
                name: "request log cost, cache off (issue 6)",
                target: "≤ 10%",
                measured: log_cost.map_or("n/a".to_owned(), |v| format!("{:.1}%", v * 100.0)),
                met: log_cost.map(|v| v <= 0.10),
            },
            Goal {
                name: "streaming TTFB overhead p50",
                target: "≤ 1 ms",
                measured: ms(ttfb),
                met: ttfb.map(|v| v <= 1.0),
            },
            Goal {
                name: "writes dropped over the run (issue 16)",
                target: "0",
                measured: self.dropped.to_string(),
                met: Some(self.dropped == 0),
            },
            Goal {
                name: "idle RSS with 10 proxies",
                target: "≤ 30 MiB",
                measured: format!("{idle:.1} MiB"),
                met: Some(idle <= IDLE_RSS_TARGET_MIB),
            },
        ]
    }

    fn sections(&self) -> Vec<Section> {
        let ms = |v: f64| format!("{v:.3}");
        let plus = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:+.3}"));
        let cpu = |usage: &Usage| {
            [
                format!("{:.0}%", usage.server),
                format!("{:.0}%", usage.generator),
                format!("{:.0}%", usage.upstream),
            ]
        };

        let mut latency_rows: Vec<Vec<String>> = self
            .latency
            .iter()
            .map(|phase| {
                let mut row = vec![phase.row()];
                row.extend(summary_cells(phase.latency(), ms));
                row.push(format!("{:.0}", phase.report.requests_per_second));
                row
            })
            .collect();
        for (proxied, label) in [(1, "added, cache off"), (2, "added, cache hit")] {
            latency_rows.push(vec![
                label.to_owned(),
                plus(self.added(proxied, |s| s.p50)),
                plus(self.added(proxied, |s| s.p95)),
                plus(self.added(proxied, |s| s.p99)),
                String::new(),
                String::new(),
            ]);
        }

        let throughput_rows = self
            .throughput
            .iter()
            .enumerate()
            .map(|(index, phase)| {
                let mut row = vec![
                    phase.row(),
                    format!("{:.0}", phase.report.requests_per_second),
                    self.throughput_ratio(index)
                        .map_or("n/a".to_owned(), |r| format!("{r:.2}×")),
                ];
                row.extend(
                    summary_cells(phase.latency(), ms)
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| *i == 0 || *i == 2)
                        .map(|(_, cell)| cell),
                );
                row.extend(cpu(&phase.usage));
                row.push(phase.dropped.to_string());
                row
            })
            .collect();

        let mut streaming_rows: Vec<Vec<String>> = self
            .streaming
            .iter()
            .map(|phase| {
                let mut row = vec![phase.row()];
                row.extend(summary_cells(phase.ttfb(), ms));
                row.push(phase.latency().map_or("n/a".to_owned(), |s| ms(s.p50)));
                row
            })
            .collect();
        let whole = |index: usize| self.streaming[index].latency().map(|s| s.p50);
        streaming_rows.push(vec![
            "overhead of the proxy".to_owned(),
            plus(self.ttfb_overhead(|s| s.p50)),
            plus(self.ttfb_overhead(|s| s.p95)),
            plus(self.ttfb_overhead(|s| s.p99)),
            String::new(),
            plus(
                whole(1)
                    .zip(whole(0))
                    .map(|(proxied, direct)| proxied - direct),
            ),
        ]);

        let memory_row = |label: String, memory: &Memory, kib: u64| {
            vec![
                label,
                format!("{:.1}", mib(kib)),
                memory.threads.to_string(),
            ]
        };
        let memory_rows = vec![
            memory_row(
                "just started, no proxies".to_owned(),
                &self.fresh,
                self.fresh.rss_kib,
            ),
            memory_row(
                format!(
                    "idle, {} proxies running, before any traffic",
                    self.idle_proxies
                ),
                &self.idle,
                self.idle.rss_kib,
            ),
            memory_row("after the run".to_owned(), &self.after, self.after.rss_kib),
            memory_row(
                "peak during the run (VmHWM)".to_owned(),
                &self.after,
                self.after.peak_kib,
            ),
        ];

        let goal_rows = self
            .goals()
            .into_iter()
            .map(|goal| {
                vec![
                    goal.name.to_owned(),
                    goal.target.to_owned(),
                    goal.measured,
                    match goal.met {
                        Some(true) => "PASS",
                        Some(false) => "MISS",
                        None => "n/a",
                    }
                    .to_owned(),
                ]
            })
            .collect();

        vec![
            Section {
                title: "Added latency at 1 connection (ms)".to_owned(),
                header: vec!["", "p50", "p95", "p99", "max", "req/s"],
                rows: latency_rows,
                note: Some(format!(
                    "{} requests per row, after {} unmeasured; the same body every time.",
                    self.requests, self.warmup
                )),
            },
            Section {
                title: format!("Throughput at {} connections", self.connections),
                header: vec![
                    "",
                    "req/s",
                    "vs direct",
                    "p50 ms",
                    "p99 ms",
                    "CPU server",
                    "CPU generator",
                    "CPU upstream",
                    "writes dropped",
                ],
                rows: throughput_rows,
                note: Some(format!(
                    "{:.0} s per row. CPU in % of one core. The cache-hit proxy counted {} hits \
                     and {} misses over the run.",
                    self.duration_seconds, self.cache_hits, self.cache_misses
                )),
            },
            Section {
                title: "Streaming TTFB at 1 connection (ms)".to_owned(),
                header: vec!["", "p50", "p95", "p99", "max", "whole stream p50"],
                rows: streaming_rows,
                note: Some(format!(
                    "{} streams per row; the upstream sends its first SSE event at once and \
                     three more 1 ms apart. TTFB is the time to the first body bytes; the last \
                     column is the time to the end of the stream.",
                    self.stream_requests
                )),
            },
            Section {
                title: "Request log cost at 32 connections".to_owned(),
                header: vec!["round", "log on req/s", "log off req/s", "cost"],
                rows: self
                    .log_rounds
                    .iter()
                    .enumerate()
                    .map(|(i, (on, off))| {
                        vec![
                            (i + 1).to_string(),
                            format!("{on:.0}"),
                            format!("{off:.0}"),
                            format!("{:.1}%", (1.0 - on / off) * 100.0),
                        ]
                    })
                    .collect(),
                note: Some(format!(
                    "Two cache-off proxies, one with \"log_requests\": false, taking turns for {:.1} s each, the one going first alternating; the target judges the median.",
                    self.log_round_seconds
                )),
            },
            Section {
                title: "Memory of the server process (MiB)".to_owned(),
                header: vec!["", "RSS", "threads"],
                rows: memory_rows,
                note: None,
            },
            Section {
                title: "Targets".to_owned(),
                header: vec!["", "target", "measured", ""],
                rows: goal_rows,
                note: None,
            },
        ]
    }

    fn preamble(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "Machine: {} CPUs, {}, Linux {}; load average at start {}",
                self.machine.cpus, self.machine.cpu_model, self.machine.kernel, self.machine.load
            ),
            format!(
                "Run: {}, {:.0} s in all{}",
                self.date,
                self.total_seconds,
                if self.quick {
                    " (--quick: too short for meaningful numbers)"
                } else {
                    ""
                }
            ),
        ];
        lines.push(
            "Server under test: `rubberduck serve` in its own process; upstream and load \
             generator (one thread) in the bench process."
                .to_owned(),
        );
        lines
    }

    /// A section to paste into BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## Results\n\n");
        for line in self.preamble() {
            out.push_str(&format!("- {line}\n"));
        }
        for section in self.sections() {
            out.push_str(&format!("\n### {}\n\n", section.title));
            out.push_str(&format!("| {} |\n", section.header.join(" | ")));
            out.push_str(&format!(
                "|{}\n",
                section
                    .header
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                    .collect::<String>()
            ));
            for row in &section.rows {
                out.push_str(&format!("| {} |\n", row.join(" | ")));
            }
            if let Some(note) = &section.note {
                out.push_str(&format!("\n{note}\n"));
            }
        }
        out
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

impl fmt::Display for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Rubberduck benchmark")?;
        for line in self.preamble() {
            writeln!(f, "{line}")?;
        }
        for section in self.sections() {
            writeln!(f, "\n{}", section.title)?;
            let columns = section.header.len();
            let widths: Vec<usize> = (0..columns)
                .map(|column| {
                    std::iter::once(section.header[column].chars().count())
                        .chain(
                            section
                                .rows
                                .iter()
                                .map(|row| row.get(column).map_or(0, |cell| cell.chars().count())),
                        )
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<&str>| -> String {
                cells
                    .iter()
                    .enumerate()
                    .map(|(column, cell)| {
                        let width = widths.get(column).copied().unwrap_or(0);
                        let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                        if column == 0 {
                            format!("  {cell}{pad}")
                        } else {
                            format!("  {pad}{cell}")
                        }
                    })
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            };
            writeln!(f, "{}", line(section.header.clone()))?;
            for row in &section.rows {
                writeln!(f, "{}", line(row.iter().map(String::as_str).collect()))?;
            }
            if let Some(note) = &section.note {
                writeln!(f, "  {note}")?;
            }
        }
        Ok(())
    }
}

/// p50, p95, p99 and max, or blanks.
fn summary_cells(summary: Option<&Summary>, format: impl Fn(f64) -> String) -> Vec<String> {
    match summary {
        Some(s) => vec![format(s.p50), format(s.p95), format(s.p99), format(s.max)],
        None => vec!["n/a".to_owned(); 4],
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![0.3, 0.1, 0.2]), Some(0.2));
        assert_eq!(median(vec![0.4, 0.1, 0.3, 0.2]), Some(0.25));
    }
}
