//! The request pipeline each proxy port runs (read it in `pipeline.rs`). Every proxy is its own
//! actix server; this module builds its app from the live configuration the registry shares
//! with it.

mod body;
mod breakage;
mod connection;
mod error;
mod faults;
mod forward;
mod headers;
mod http2;
mod pipeline;
mod reach;
mod server;
mod spend;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use arc_swap::ArcSwap;
use chrono::Utc;

pub use body::{BodyBudget, BodyLimits};
pub use error::GatewayError;
pub use server::{ServerOptions, serve};
use spend::DailySpend;

use tokio::sync::Notify;

use crate::cache::ResponseCache;
use crate::faults::Faults;
use crate::forwarded::TrustedProxies;
use crate::providers::{ProviderState, Usage};
use crate::reach::MemberUpstreams;
use crate::spec::ProxySpec;
use crate::telemetry::Telemetry;

/// What a running proxy server reads on every request. The registry swaps `spec` whole when the
/// user saves, so the request path never reads the database and never sees half an edit.
pub struct LiveProxy {
    pub spec: ArcSwap<ProxySpec>,
    /// The failure config with its state (seeded RNG, rate window); swapped whole on save.
    pub faults: ArcSwap<Faults>,
    /// Woken when the proxy stops, ending hung requests.
    pub stopping: Notify,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// Live spend of the current UTC day, for the daily spend cap.
    spend: DailySpend,
}

/// Requests and tokens through one proxy since Rubberduck started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl LiveProxy {
    /// `spent_today_usd`: the live spend recorded earlier in the current UTC day (before a
    /// restart), so the cap goes on from there.
    pub fn new(spec: ProxySpec, spent_today_usd: f64) -> Self {
        LiveProxy {
            faults: ArcSwap::from_pointee(Faults::new(spec.failure_config.clone())),
            stopping: Notify::new(),
            spec: ArcSwap::from_pointee(spec),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            spend: DailySpend::new(spent_today_usd, Utc::now()),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
        }
    }

    /// What answers from the upstream or the emulator cost today (UTC), in USD.
    pub fn spent_today_usd(&self) -> f64 {
        self.spend.on(Utc::now())
    }

    fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what a forwarded (or emulated) answer used and, for the daily spend cap, what it
    /// cost (`None`: no price, or a cache hit).
    fn record_usage(&self, usage: Usage, live_cost_usd: Option<f64>) {
        self.input_tokens
            .fetch_add(usage.input_tokens.unwrap_or(0), Ordering::Relaxed);
        self.output_tokens
            .fetch_add(usage.output_tokens.unwrap_or(0), Ordering::Relaxed);
        if let Some(cost) = live_cost_usd {
            self.spend.add(cost, Utc::now());
        }
    }
}

/// A daily spend cap that today's spend has reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendCap {
    pub cap_usd: f64,
    pub spent_usd: f64,
}

impl SpendCap {
    /// The cap, when `spent_usd` has reached it: from then on misses are refused (a cap of 0
    /// refuses every miss).
    pub fn reached(cap_usd: f64, spent_usd: f64) -> Option<SpendCap> {
        (spent_usd >= cap_usd).then_some(SpendCap { cap_usd, spent_usd })
    }
}

/// Counts a request as in flight for as long as it is alive, streamed body included.
pub(crate) struct InFlight(Arc<LiveProxy>);

impl InFlight {
    fn live(&self) -> &LiveProxy {
        &self.0
    }
}

impl InFlight {
    fn enter(live: &Arc<LiveProxy>) -> Self {
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(live))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How proxies talk to their upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// From sending the request to the response head; a streamed body may take longer.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// Size, deadline and shared memory budget of request bodies.
    pub bodies: BodyLimits,
    /// Connections one proxy port serves at once.
    pub max_connections: usize,
    /// One TLS client configuration for every worker of every proxy: the root certificates
    /// are parsed once, not once per worker.
    pub tls: Arc<rustls::ClientConfig>,
}

impl UpstreamSettings {
    /// The TLS configuration proxies use upstream: the webpki roots, HTTP/1.1 only (the HTTP
    /// client is built without HTTP/2).
    pub fn tls_config() -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(actix_tls::connect::rustls_0_23::webpki_roots_cert_store())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Everything one proxy server shares between its workers.
pub struct ProxyServerState {
    pub live: Arc<LiveProxy>,
    /// The reverse proxies trusted everywhere (the client IP behind them), as the admin last
    /// saved them.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// For a member's proxy, the upstreams members may reach besides public addresses; `None`
    /// for an admin's proxy, which reaches anything.
    pub members: Option<Arc<MemberUpstreams>>,
    pub cache: Arc<ResponseCache>,
    pub telemetry: Arc<Telemetry>,
    pub provider_state: ProviderState,
    pub upstream: UpstreamSettings,
}

/// Registers the pipeline on a proxy server's app; runs once per worker, so each worker gets
/// its own pooled upstream client (awc clients are not `Send`).
pub fn configure(cfg: &mut web::ServiceConfig, state: Arc<ProxyServerState>) {
    let client = forward::upstream_client(&state.upstream, state.members.clone());
    cfg.app_data(web::Data::new(client))
        .app_data(web::Data::from(state))
        .default_service(web::to(handle));
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ProxyServerState>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    pipeline::run(&req, payload, &state, &client).await
}
