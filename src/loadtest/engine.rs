//! The load generator: a fixed number of keep-alive HTTP/1.1 connections, one request in flight
//! on each, timed into per-worker histograms that are merged at the end.
//!
//! Each worker owns its connection (hyper's low-level `client::conn`), so concurrency is exactly
//! the number of connections, with no pool or lock shared between workers.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::header::{HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::net::TcpStream;

use super::LoadtestError;
use super::report::{ErrorCounts, Report, Summary};
use super::request::Bodies;

/// Latencies are recorded in microseconds, up to an hour.
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// After a failed connect, a worker waits this long so a dead target is not hammered in a loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// Where requests go: the resolved address, the `Host` header, and a path prefix from the URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub prefix: String,
}

impl Target {
    /// Parses and resolves an `http://host:port[/prefix]` URL.
    pub fn parse(url: &str) -> Result<Target, LoadtestError> {
        let bad = || LoadtestError::BadUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(LoadtestError::UnsupportedScheme(other.to_owned())),
            None => return Err(bad()),
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|source| LoadtestError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| LoadtestError::Resolve {
                host: host.to_owned(),
                source: std::io::Error::other("no address"),
            })?;
        Ok(Target {
            addr,
            authority: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// One load test: what to send, where, how hard and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub bodies: Bodies,
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Stops after this many requests …
    pub requests: Option<u64>,
    /// … or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub concurrency: usize,
    /// Runtime threads driving the connections.
    pub threads: usize,
    /// A request without a complete answer by then counts as a timeout.
    pub timeout: Duration,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// The fixed parts of every request, shared by the workers.
struct Shared {
    plan: Plan,
    uri: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    issued: AtomicU64,
    completed: AtomicU64,
    deadline: Option<Instant>,
}

impl Shared {
    /// The index of the next request to send, or `None` when the run is over.
    fn next_ticket(&self) -> Option<u64> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return None;
        }
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.plan.requests {
            Some(limit) if index >= limit => None,
            _ => Some(index),
        }
    }

    fn request(&self, index: u64) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.plan.bodies.body(index)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

/// What one worker saw.
struct Tally {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: ErrorCounts,
}

impl Tally {
    fn new() -> Result<Self, LoadtestError> {
        Ok(Tally {
            latency: histogram()?,
            ttfb: histogram()?,
            statuses: BTreeMap::new(),
            errors: ErrorCounts::default(),
        })
    }

    fn merge(&mut self, other: Tally) -> Result<(), LoadtestError> {
        let fail = |e: hdrhistogram::AdditionError| LoadtestError::Histogram(e.to_string());
        self.latency.add(&other.latency).map_err(fail)?;
        self.ttfb.add(&other.ttfb).map_err(fail)?;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.errors.add(&other.errors);
        Ok(())
    }
}

fn histogram() -> Result<Histogram<u64>, LoadtestError> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
        .map_err(|e| LoadtestError::Histogram(e.to_string()))
}

/// Runs the plan to its end on a runtime of its own and reports.
pub fn run(plan: Plan) -> Result<Report, LoadtestError> {
    let threads = plan.threads.max(1);
    // One thread needs no work-stealing scheduler; its wake-ups are cheaper.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("loadtest")
            .enable_all()
            .build()
    }
    .map_err(LoadtestError::Runtime)?;

    let mut headers = plan.bodies.shape().headers();
    headers.push((
        HOST,
        HeaderValue::from_str(&plan.target.authority)
            .map_err(|_| LoadtestError::BadUrl(plan.target.authority.clone()))?,
    ));
    headers.push((
        USER_AGENT,
        HeaderValue::from_static(concat!("rubberduck-loadtest/", env!("CARGO_PKG_VERSION"))),
    ));
    // Extra headers replace defaults of the same name (a user may set their own content-type).
    headers.retain(|(name, _)| !plan.extra_headers.iter().any(|(extra, _)| extra == name));
    headers.extend(plan.extra_headers.iter().cloned());
    let path = format!("{}{}", plan.target.prefix, plan.bodies.shape().path());
    let uri = path.parse().map_err(|_| LoadtestError::BadPath(path))?;
    let stream = plan.bodies.shape().stream;
    let concurrency = plan.concurrency.max(1);

    let started = Instant::now();
    let shared = Arc::new(Shared {
        deadline: plan.duration.map(|d| started + d),
        uri,
        headers,
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        plan,
    });
    let progress = Progress::start(Arc::clone(&shared), started);

    let tallies: Vec<Result<Tally, LoadtestError>> = runtime.block_on(async {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(worker(Arc::clone(&shared))))
            .collect();
        let mut tallies = Vec::with_capacity(workers.len());
        for worker in workers {
            tallies.push(
                worker
                    .await
                    .map_err(|e| LoadtestError::Worker(e.to_string()))
                    .and_then(|tally| tally),
            );
        }
        tallies
    });
    let elapsed = started.elapsed();
    progress.finish();

    let mut total = Tally::new()?;
    for tally in tallies {
        total.merge(tally?)?;
    }
    let requests = shared.completed.load(Ordering::Relaxed);
    Ok(Report {
        requests,
        concurrency,
        elapsed_seconds: elapsed.as_secs_f64(),
        requests_per_second: if elapsed.is_zero() {
            0.0
        } else {
            requests as f64 / elapsed.as_secs_f64()
        },
        latency_ms: Summary::of(&total.latency),
        ttfb_ms: if stream {
            Summary::of(&total.ttfb)
        } else {
            None
        },
        status_counts: total
            .statuses
            .into_iter()
            .map(|(status, count)| (status.to_string(), count))
            .collect(),
        errors: total.errors,
    })
}

async fn worker(shared: Arc<Shared>) -> Result<Tally, LoadtestError> {
    let mut tally = Tally::new()?;
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    while let Some(index) = shared.next_ticket() {
        let sender = match connection.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match connect(shared.plan.target.addr).await {
                Ok(sender) => sender,
                Err(_) => {
                    tally.errors.connection += 1;
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let request = shared.request(index);
        let started = Instant::now();
        match tokio::time::timeout(shared.plan.timeout, exchange(sender, request, started)).await {
            Ok(Ok(answer)) => {
                tally.latency.saturating_record(micros(answer.latency));
                if let Some(first) = answer.first_byte {
                    tally.ttfb.saturating_record(micros(first));
                }
                *tally.statuses.entry(answer.status).or_default() += 1;
                if answer.reusable {
                    connection = Some(answer.sender);
                }
            }
            // A failed or timed-out exchange leaves the connection in an unknown state: drop it.
            Ok(Err(error)) if is_connection_error(&error) => tally.errors.connection += 1,
            Ok(Err(_)) => tally.errors.other += 1,
            Err(_) => tally.errors.timeout += 1,
        }
        shared.completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(tally)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, std::io::Error> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and latency is what is measured: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Errors surface on the request that hit them; the driver only needs to run.
        let _ = connection.await;
    });
    Ok(sender)
}

struct Answer {
    sender: SendRequest<Full<Bytes>>,
    status: u16,
    latency: Duration,
    first_byte: Option<Duration>,
    reusable: bool,
}

/// Sends one request and reads its whole body, timing the first body bytes and the end.
async fn exchange(
    mut sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    started: Instant,
) -> Result<Answer, hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let closes = response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut body = response.into_body();
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if first_byte.is_none() && frame.data_ref().is_some_and(|data| !data.is_empty()) {
            first_byte = Some(started.elapsed());
        }
    }
    Ok(Answer {
        latency: started.elapsed(),
        sender,
        status,
        first_byte,
        reusable: !closes,
    })
}

/// Refused, reset or closed connections, as opposed to protocol errors.
fn is_connection_error(error: &hyper::Error) -> bool {
    if error.is_closed() || error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A progress bar on stderr, fed from the shared counters by a thread of its own so that it
/// never competes with the workers' runtime.
struct Progress {
    bar: ProgressBar,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(shared: Arc<Shared>, started: Instant) -> Progress {
        let visible = shared.plan.progress && std::io::stderr().is_terminal();
        let done = Arc::new(AtomicBool::new(false));
        if !visible {
            return Progress {
                bar: ProgressBar::hidden(),
                done,
                thread: None,
            };
        }
        // With a duration the bar shows time (which usually ends the run); else requests.
        let by_time = shared.plan.duration;
        let length = by_time.map_or(shared.plan.requests.unwrap_or(0), |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        });
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        let template = "{spinner} [{elapsed_precise}] {wide_bar} {msg}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let ticker = bar.clone();
        let finished = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("loadtest-progress".to_owned())
            .spawn(move || {
                while !finished.load(Ordering::Relaxed) {
                    let completed = shared.completed.load(Ordering::Relaxed);
                    let elapsed = started.elapsed();
                    ticker.set_position(if by_time.is_some() {
                        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
                    } else {
                        completed
                    });
                    ticker.set_message(format!(
                        "{completed} requests, {:.0} req/s",
                        completed as f64 / elapsed.as_secs_f64().max(0.001)
                    ));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .ok();
        Progress { bar, done, thread }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let target = Target::parse("http://127.0.0.1:8001").expect("parses");
        assert_eq!(target.addr, SocketAddr::from(([127, 0, 0, 1], 8001)));
        assert_eq!(target.authority, "127.0.0.1:8001");
        assert_eq!(target.prefix, "");
        let target = Target::parse("http://127.0.0.1:8001/base/").expect("parses");
        assert_eq!(target.prefix, "/base");
        assert!(matches!(
            Target::parse("https://127.0.0.1:8001"),
            Err(LoadtestError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Target::parse("127.0.0.1:8001"),
            Err(LoadtestError::BadUrl(_))
        ));
        assert!(matches!(
            Target::parse("not a url"),
            Err(LoadtestError::BadUrl(_))
        ));
    }
}
