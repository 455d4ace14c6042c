//! `rubberduck loadtest`: fires LLM-shaped requests at a proxy (or any provider-compatible
//! server) and reports throughput, latency percentiles, status codes and errors.

mod engine;
mod report;
mod request;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use http::header::{HeaderName, HeaderValue};

pub use engine::{Plan, Target, run};
pub use report::{Report, Summary};
pub use request::{Bodies, RequestShape, default_model};

use crate::providers::ProviderKind;

/// The prompt when no `--prompt-file` is given.
const DEFAULT_PROMPT: &str = "Say hello in one short sentence.";
/// The number of requests when neither `-n` nor `--duration` is given.
const DEFAULT_REQUESTS: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("“{0}” is not a URL such as http://127.0.0.1:8001")]
    BadUrl(String),
    #[error("only http:// URLs can be load-tested, not {0}://")]
    UnsupportedScheme(String),
    #[error("“{0}” is not a valid request path (check --model and the --vertex-* flags)")]
    BadPath(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot read the prompt file {path}: {source}")]
    PromptFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the prompt file {0} has no prompts (one per non-empty line)")]
    EmptyPromptFile(PathBuf),
    #[error("cannot start the load generator's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("a load generator worker failed: {0}")]
    Worker(String),
    #[error("cannot record latencies: {0}")]
    Histogram(String),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}

#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// Base URL of the proxy, as on its card (e.g. http://127.0.0.1:8001). A path in it is
    /// put before the provider's path.
    pub url: String,

    /// Provider whose SDK requests to imitate: openai, anthropic, azure_openai, bedrock,
    /// vertex_ai or deepseek.
    #[arg(long, default_value = "openai")]
    pub provider: ProviderKind,

    /// Model (Azure: deployment; Bedrock: model id) named in the request. Default: one per
    /// provider.
    #[arg(long)]
    pub model: Option<String>,

    /// Number of requests (default 1000 when --duration is not given either).
    #[arg(short = 'n', long = "requests", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open connections, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Run for this long (e.g. 30s, 2m, 500ms); with -n, stops at whichever comes first.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Ask for streamed answers (SSE, or AWS event stream) and report time to first byte.
    #[arg(long)]
    pub stream: bool,

    /// Make every request body distinct, so that every request misses the cache.
    #[arg(long)]
    pub unique: bool,

    /// File of prompts, one per non-empty line; repeat for several files. Prompts are used
    /// round-robin in file order.
    #[arg(long = "prompt-file", value_name = "FILE")]
    pub prompt_files: Vec<PathBuf>,

    /// Extra request header as 'Name: value' (e.g. 'Authorization: Bearer sk-…'); repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// Print the result as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,

    /// How long a request may take before it counts as a timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Threads driving the connections (default: one per CPU, at most one per connection).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Vertex AI project named in the path.
    #[arg(long, default_value = "rubberduck-loadtest")]
    pub vertex_project: String,

    /// Vertex AI location named in the path.
    #[arg(long, default_value = "us-central1")]
    pub vertex_location: String,
}

/// Runs `rubberduck loadtest` and prints its report.
pub fn main(args: LoadtestArgs) -> ExitCode {
    let json = args.json;
    match plan(args).and_then(run) {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            let written = if json {
                serde_json::to_writer_pretty(&mut stdout, &report)
                    .map_err(std::io::Error::other)
                    .and_then(|()| writeln!(stdout))
            } else {
                write!(stdout, "{report}")
            };
            match written.map_err(LoadtestError::Output) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(error: &LoadtestError) -> ExitCode {
    eprintln!("rubberduck loadtest: {error}");
    ExitCode::FAILURE
}

/// Turns the command line into a plan, reading prompt files and resolving the target.
pub fn plan(args: LoadtestArgs) -> Result<Plan, LoadtestError> {
    let target = Target::parse(&args.url)?;
    let prompts = if args.prompt_files.is_empty() {
        vec![DEFAULT_PROMPT.to_owned()]
    } else {
        let mut prompts = Vec::new();
        for path in &args.prompt_files {
            prompts.extend(read_prompts(path)?);
        }
        prompts
    };
    let shape = RequestShape {
        provider: args.provider,
        model: args
            .model
            .unwrap_or_else(|| default_model(args.provider).to_owned()),
        stream: args.stream,
        vertex_project: args.vertex_project,
        vertex_location: args.vertex_location,
    };
    let unique = args.unique.then(run_id);
    let requests = match (args.requests, args.duration) {
        (None, None) => Some(DEFAULT_REQUESTS),
        (requests, _) => requests,
    };
    // More connections than requests would only open idle connections.
    let concurrency = requests.map_or(usize::from(args.concurrency), |n| {
        usize::try_from(n).map_or(usize::from(args.concurrency), |n| {
            n.min(usize::from(args.concurrency))
        })
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Plan {
        target,
        bodies: Bodies::new(shape, prompts, unique),
        extra_headers: args.headers,
        requests,
        duration: args.duration,
        concurrency,
        threads: args.threads.map_or(cpus.min(concurrency), usize::from),
        timeout: args.timeout,
        progress: !args.json,
    })
}

/// One prompt per non-empty line (trailing whitespace trimmed).
fn read_prompts(path: &Path) -> Result<Vec<String>, LoadtestError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::PromptFile {
        path: path.to_owned(),
        source,
    })?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if prompts.is_empty() {
        return Err(LoadtestError::EmptyPromptFile(path.to_owned()));
    }
    Ok(prompts)
}

/// Distinguishes this run's unique bodies from earlier runs' (the cache outlives a run).
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// A positive duration such as `30s`, `500ms`, `2m` or `1m 30s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Ok(Duration::from_secs_f64(seconds))
        }
        Ok(_) => Err(()),
        Err(_) => humantime::parse_duration(text).map_err(|_| ()),
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("the duration must be longer than zero".to_owned()),
        Err(()) => Err(format!(
            "“{text}” is not a duration such as 30s, 500ms or 2m"
        )),
    }
}

/// `Name: value`, as curl takes it.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("“{text}” is not a header; write it as 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("“{}” is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header {name} has characters a header cannot carry"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 1.5 "), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("NaN").is_err());
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn headers() {
        let (name, value) = parse_header("Authorization: Bearer sk-1").expect("parses");
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer sk-1");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn prompt_files_have_one_prompt_per_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("prompts.txt");
        std::fs::write(&path, "first\n\n  second  \n   \n").expect("write");
        assert_eq!(read_prompts(&path).expect("reads"), ["first", "  second"]);
        std::fs::write(&path, "\n\n").expect("write");
        assert!(matches!(
            read_prompts(&path),
            Err(LoadtestError::EmptyPromptFile(_))
        ));
        assert!(matches!(
            read_prompts(&dir.path().join("missing")),
            Err(LoadtestError::PromptFile { .. })
        ));
    }
}
