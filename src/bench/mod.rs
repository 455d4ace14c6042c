//! `rubberduck bench`: what a proxy costs over calling the upstream directly, measured in one
//! run on this machine. The server under test is the real binary in a child process; the fast
//! upstream and the load generator run in this process. See BENCHMARKS.md for the method.

mod report;
mod server;
mod system;
mod upstream;

use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use http::Method;
use serde_json::{Value, json};

use crate::loadtest::{self, Bodies, LoadtestError, Plan, Report, RequestShape, Target};
use crate::providers::ProviderKind;
pub use report::Results;
use report::{Phase, Usage};
use server::Server;
use system::Machine;
use upstream::Upstream;

/// Proxies running while idle memory is measured.
const IDLE_PROXIES: usize = 10;
/// Turns the logged and the unlogged proxy take, for the request log's cost; each round lasts
/// this fraction of a throughput phase, so all of them together take as long as three phases.
const LOG_ROUNDS: u32 = 10;
/// Ports the server may give proxies (the ten plus slack).
const PORT_BLOCK: u16 = 12;
const PROMPT: &str = "Say hello in one short sentence.";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot run the bench upstream: {0}")]
    Upstream(std::io::Error),
    #[error("cannot start a thread or runtime to talk to the server: {0}")]
    Threads(std::io::Error),
    #[error("cannot start the server under test ({binary}): {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
    #[error("admin API: {0}")]
    Api(String),
    #[error("reading /proc: {0}")]
    Proc(String),
    #[error("no block of {0} free ports between 20000 and 30000; pass --proxy-ports")]
    NoFreePorts(u16),
    #[error("cannot create a temporary data directory: {0}")]
    DataDir(std::io::Error),
    #[error(transparent)]
    Loadtest(#[from] LoadtestError),
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Requests per latency phase (one connection).
    #[arg(short = 'n', long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,

    /// Length of each throughput phase.
    #[arg(long, default_value = "10s", value_parser = loadtest::parse_duration)]
    pub duration: Duration,

    /// Connections in the throughput phases.
    #[arg(short = 'c', long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,

    /// Streamed requests per TTFB phase (one connection).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_requests: u64,

    /// Requests sent before each phase and not measured (connections, caches, allocator warm).
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,

    /// A run of a few seconds to check that the bench works; its numbers mean little.
    #[arg(long)]
    pub quick: bool,

    /// Print a Markdown section for BENCHMARKS.md instead of the plain table.
    #[arg(long)]
    pub markdown: bool,

    /// Ports the server under test may give its proxies, as FIRST-LAST (at least 10; default:
    /// a free block between 20000 and 30000).
    #[arg(long, value_parser = crate::validation::parse_port_range)]
    pub proxy_ports: Option<RangeInclusive<u16>>,

    /// The rubberduck binary to run as the server under test (default: this one), to compare
    /// two builds with the same bench.
    #[arg(long)]
    pub server: Option<PathBuf>,
}

impl BenchArgs {
    /// `--quick` overrides the sizes of every phase.
    fn sizes(&self) -> BenchArgs {
        if !self.quick {
            return self.clone();
        }
        BenchArgs {
            requests: 200,
            duration: Duration::from_secs(1),
            stream_requests: 50,
            warmup: 20,
            ..self.clone()
        }
    }
}

pub fn main(args: &BenchArgs) -> ExitCode {
    match run(args) {
        Ok(results) => {
            if args.markdown {
                print!("{}", results.markdown());
            } else {
                print!("{results}");
            }
            // The throughput numbers were bought by losing logs or cache entries. A --quick run
            // only checks that the bench works: its report marks the loss, its status does not.
            if results.dropped > 0 && !args.quick {
                eprintln!(
                    "rubberduck bench: the server dropped {} writes (see the \"writes dropped\" column)",
                    results.dropped
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rubberduck bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the phases need: the upstream, the server and its proxies.
struct Bench {
    started: Instant,
    sizes: BenchArgs,
    upstream: Upstream,
    server: Server,
    cache_off_port: u16,
    /// Cache off and request log off: what the request log costs.
    unlogged_port: u16,
    cache_hit_port: u16,
    cache_hit_id: i64,
    /// The server's dropped-writes count when the last phase ended.
    dropped_before: std::cell::Cell<u64>,
}

pub fn run(args: &BenchArgs) -> Result<Results, BenchError> {
    let started = Instant::now();
    let machine = Machine::describe();
    let sizes = args.sizes();
    let binary = match &args.server {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().map_err(|source| BenchError::Spawn {
            binary: PathBuf::from("rubberduck"),
            source,
        })?,
    };
    let ports = match &args.proxy_ports {
        Some(ports) if ports.len() >= IDLE_PROXIES => ports.clone(),
        Some(ports) => {
            return Err(BenchError::Server(format!(
                "--proxy-ports {}-{} has fewer than {IDLE_PROXIES} ports",
                ports.start(),
                ports.end()
            )));
        }
        None => free_port_block()?,
    };
    // Declared before the server so that it is removed after the server is stopped.
    let data = tempfile::tempdir().map_err(BenchError::DataDir)?;
    let upstream = Upstream::start()?;
    progress(started, "starting the server under test");
    let token = crate::auth::secret::generate("bench_", 24);
    let server = Server::start(&binary, &data.path().join("data"), &ports, &token)?;

    let fresh = system::memory(server.pid())?;
    progress(started, &format!("creating {IDLE_PROXIES} proxies"));
    let upstream_url = format!("http://{}/v1", upstream.addr);
    let mut proxies = Vec::with_capacity(IDLE_PROXIES);
    for index in 0..IDLE_PROXIES {
        let proxy = server.api(
            Method::POST,
            "/api/proxies",
            Some(json!({
                "name": format!("bench {index}"),
                "provider": "openai",
                "upstream_url": upstream_url,
                "description": "created by rubberduck bench",
            })),
        )?;
        let port = json_port(&proxy)?;
        server.wait_for_port(port)?;
        proxies.push((json_id(&proxy)?, port));
    }
    let (cache_off_id, cache_off_port) = proxies[0];
    let (cache_hit_id, cache_hit_port) = proxies[1];
    let (unlogged_id, unlogged_port) = proxies[2];
    server.api(
        Method::PATCH,
        &format!("/api/proxies/{cache_off_id}"),
        Some(json!({"cache": {"enabled": false}})),
    )?;
    server.api(
        Method::PATCH,
        &format!("/api/proxies/{unlogged_id}"),
        Some(json!({"cache": {"enabled": false}, "log_requests": false})),
    )?;

    // Idle memory: the ten proxies are up and nothing has been proxied yet.
    std::thread::sleep(Duration::from_secs(if sizes.quick { 1 } else { 3 }));
    let idle = system::memory(server.pid())?;

    let bench = Bench {
        started,
        sizes,
        upstream,
        server,
        cache_off_port,
        unlogged_port,
        cache_hit_port,
        cache_hit_id,
        dropped_before: std::cell::Cell::new(0),
    };
    let mut results = bench.phases(machine, fresh, idle)?;
    results.total_seconds = started.elapsed().as_secs_f64();
    Ok(results)
}

impl Bench {
    fn phases(
        &self,
        machine: Machine,
        fresh: system::Memory,
        idle: system::Memory,
    ) -> Result<Results, BenchError> {
        let direct = format!("http://{}", self.upstream.addr);
        let cache_off = format!("http://127.0.0.1:{}", self.cache_off_port);
        let cache_hit = format!("http://127.0.0.1:{}", self.cache_hit_port);
        let unlogged = format!("http://127.0.0.1:{}", self.unlogged_port);
        let n = Load::Requests(self.sizes.requests);
        let time = Load::Duration(self.sizes.duration);
        let streams = Load::Requests(self.sizes.stream_requests);
        let c = usize::from(self.sizes.connections);

        let latency = [
            self.phase("latency, direct", &direct, n, 1, false)?,
            self.phase("latency, proxy cache off", &cache_off, n, 1, false)?,
            self.phase("latency, proxy cache hit", &cache_hit, n, 1, false)?,
        ];
        let throughput = [
            self.phase("throughput, direct", &direct, time, c, false)?,
            self.phase("throughput, proxy cache off", &cache_off, time, c, false)?,
            self.phase("throughput, proxy cache hit", &cache_hit, time, c, false)?,
            self.phase(
                "throughput, proxy cache off, no request log",
                &unlogged,
                time,
                c,
                false,
            )?,
        ];
        // The request log's cost is a small difference between two noisy numbers: the two
        // proxies take turns, the one going first alternating so that drift over the run and
        // anything one turn leaves to the next fall on both alike, and the median of the rounds'
        // ratios is reported.
        let round = self.sizes.duration * 3 / LOG_ROUNDS / 2;
        let mut log_rounds = Vec::new();
        for turn in 0..LOG_ROUNDS {
            let measure = |label, url| {
                self.phase(label, url, Load::Duration(round), c, false)
                    .map(|phase| phase.report.requests_per_second)
            };
            let (on, off) = if turn % 2 == 0 {
                let on = measure("log round, request log on", &cache_off)?;
                (on, measure("log round, request log off", &unlogged)?)
            } else {
                let off = measure("log round, request log off", &unlogged)?;
                (measure("log round, request log on", &cache_off)?, off)
            };
            log_rounds.push((on, off));
        }
        let streaming = [
            self.phase("stream TTFB, direct", &direct, streams, 1, true)?,
            self.phase("stream TTFB, proxy cache off", &cache_off, streams, 1, true)?,
        ];
        let cache = self.server.api(
            Method::GET,
            &format!("/api/proxies/{}/cache", self.cache_hit_id),
            None,
        )?;
        let after = system::memory(self.server.pid())?;
        let dropped = self.server.dropped_writes()?;
        progress(self.started, "done");
        Ok(Results {
            machine,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            requests: self.sizes.requests,
            duration_seconds: self.sizes.duration.as_secs_f64(),
            connections: c,
            stream_requests: self.sizes.stream_requests,
            warmup: self.sizes.warmup,
            quick: self.sizes.quick,
            latency,
            throughput,
            log_rounds,
            log_round_seconds: round.as_secs_f64(),
            streaming,
            cache_hits: cache["hits"].as_u64().unwrap_or(0),
            cache_misses: cache["misses"].as_u64().unwrap_or(0),
            idle_proxies: IDLE_PROXIES,
            fresh,
            idle,
            after,
            total_seconds: 0.0,
            dropped,
        })
    }

    /// Warms up, then runs one measured load test and the CPU each party used meanwhile.
    fn phase(
        &self,
        label: &'static str,
        url: &str,
        load: Load,
        concurrency: usize,
        stream: bool,
    ) -> Result<Phase, BenchError> {
        progress(self.started, label);
        // Streams last milliseconds each, so they get a tenth of the warm-up.
        let warmup = if stream {
            self.sizes.warmup.div_ceil(10)
        } else {
            self.sizes.warmup
        };
        if warmup > 0 {
            loadtest::run(self.plan(url, Load::Requests(warmup), concurrency, stream)?)?;
        }
        let before = self.usage()?;
        let report = loadtest::run(self.plan(url, load, concurrency, stream)?)?;
        let usage = self.usage()?.since(&before, report.elapsed_seconds);
        check(label, &report)?;
        // Read after the phase, warm-up included: a write is counted as dropped when it is
        // submitted, so nothing of this phase is counted later.
        let (dropped_so_far, series) = self.server.dropped_writes_by_series()?;
        let dropped = dropped_so_far.saturating_sub(self.dropped_before.replace(dropped_so_far));
        if dropped > 0 {
            progress(
                self.started,
                &format!("{label}: the server DROPPED {dropped} writes (so far: {series})"),
            );
        }
        Ok(Phase {
            label,
            report,
            usage,
            dropped,
        })
    }

    fn plan(
        &self,
        url: &str,
        load: Load,
        concurrency: usize,
        stream: bool,
    ) -> Result<Plan, BenchError> {
        let shape = RequestShape {
            provider: ProviderKind::Openai,
            model: loadtest::default_model(ProviderKind::Openai).to_owned(),
            stream,
            vertex_project: String::new(),
            vertex_location: String::new(),
        };
        Ok(Plan {
            target: Target::parse(url)?,
            // Always the same body: the cache-hit proxy answers all but the first from cache.
            bodies: Bodies::new(shape, vec![PROMPT.to_owned()], None),
            extra_headers: Vec::new(),
            requests: match load {
                Load::Requests(n) => Some(n),
                Load::Duration(_) => None,
            },
            duration: match load {
                Load::Requests(_) => None,
                Load::Duration(d) => Some(d),
            },
            concurrency,
            // One generator thread leaves the other core(s) to the server and the upstream;
            // its CPU use is reported per phase to show whether it kept up.
            threads: 1,
            timeout: REQUEST_TIMEOUT,
            progress: true,
        })
    }

    /// CPU seconds so far of the server, the upstream thread and the rest of this process
    /// (the load generator).
    fn usage(&self) -> Result<Usage, BenchError> {
        let upstream = system::own_threads_cpu_seconds(upstream::THREAD_NAME)?;
        let own = system::process_cpu_seconds(std::process::id())?;
        Ok(Usage {
            server: system::process_cpu_seconds(self.server.pid())?,
            upstream,
            generator: own - upstream,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Load {
    Requests(u64),
    Duration(Duration),
}

/// A phase with failed requests measured something else than intended: stop and say so.
fn check(label: &str, report: &Report) -> Result<(), BenchError> {
    if report.failures() == 0 {
        return Ok(());
    }
    Err(BenchError::Server(format!(
        "{label}: {} of {} requests failed (statuses {:?}, errors {:?})",
        report.failures(),
        report.requests,
        report.status_counts,
        report.errors
    )))
}

fn progress(started: Instant, step: &str) {
    eprintln!("bench [{:5.1} s] {step}", started.elapsed().as_secs_f64());
}

/// A block of ports free right now, below the kernel's ephemeral range so outgoing
/// connections do not take them meanwhile.
fn free_port_block() -> Result<RangeInclusive<u16>, BenchError> {
    let offset = u16::try_from(std::process::id() % 500).unwrap_or(0);
    for attempt in 0..500u16 {
        let first = 20_000 + ((offset + attempt) % 500) * 20;
        let block = first..=first + PORT_BLOCK - 1;
        if block
            .clone()
            .all(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
        {
            return Ok(block);
        }
    }
    Err(BenchError::NoFreePorts(PORT_BLOCK))
}

fn json_port(proxy: &Value) -> Result<u16, BenchError> {
    proxy["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| BenchError::Api(format!("a proxy without a port: {proxy}")))
}

fn json_id(proxy: &Value) -> Result<i64, BenchError> {
    proxy["id"]
        .as_i64()
        .ok_or_else(|| BenchError::Api(format!("a proxy without an id: {proxy}")))
}
