//! Forwarding: the client's bytes go upstream unchanged (bar hop-by-hop headers and provider
//! credentials), and the upstream's answer streams back without buffering.

use actix_web::body::SizedStream;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::error::GatewayError;
use super::faults;
use super::headers::{connection_tokens, forwardable, returnable};
use super::usage::UsageMeter;
use super::{InFlight, LiveProxy, ProxyServerState, UpstreamSettings};
use crate::cache::{
    CacheKey, CachedResponse, KeyParts, MAX_ENTRY_BYTES, ResponseCache, is_content_header,
};
use crate::emulator;
use crate::faults::Decision;
use crate::ids::ProxyId;
use crate::providers::UpstreamRequest;
use crate::providers::Usage;
use crate::settings::Settings;
use crate::spec::{CacheMode, ProxySpec};
use crate::telemetry::{FailureKind, LogDraft, Telemetry, model_of};

/// The upstream's body on its way to the client. It carries the in-flight guard, so a streamed
/// answer counts until its last byte, and reads usage as chunks pass. Dropping it (the client
/// went away) drops the upstream connection too.
struct MeteredBody<S> {
    upstream: S,
    meter: Option<UsageMeter>,
    recorder: Option<Recorder>,
    log: Option<PendingLog>,
    in_flight: InFlight,
}

/// The log entry of a forwarded request, finished with the body.
struct PendingLog {
    draft: LogDraft,
    telemetry: Arc<Telemetry>,
    status: u16,
    bytes: u64,
}

impl<S> MeteredBody<S> {
    /// Ends metering once: counts the usage and logs the request. Returns the usage the first
    /// time.
    fn settle(&mut self) -> Option<Usage> {
        let usage = self.meter.take()?.finish();
        self.in_flight.live().record_usage(usage);
        if let Some(mut log) = self.log.take() {
            log.draft.usage = usage;
            log.telemetry.finish(log.draft, log.status, log.bytes);
        }
        Some(usage)
    }
}

/// Copies a successful answer as it streams through (chunks are reference-counted, not
/// copied) and stores it once the upstream has sent all of it; an answer cut short is dropped.
struct Recorder {
    cache: Arc<ResponseCache>,
    proxy: ProxyId,
    key: CacheKey,
    status: u16,
    headers: Vec<(String, String)>,
    streamed: bool,
    chunks: Vec<Bytes>,
    size: usize,
}

impl Recorder {
    /// False once the answer is too large to keep.
    fn push(&mut self, chunk: &Bytes) -> bool {
        self.size += chunk.len();
        self.chunks.push(chunk.clone());
        self.size <= MAX_ENTRY_BYTES
    }

    fn finish(self, usage: Usage) {
        let lengths: Vec<usize> = self.chunks.iter().map(Bytes::len).collect();
        // A copy of exactly the body: the chunks are views into the client's read buffers, and
        // keeping one would keep the whole buffer alive for as long as the entry lives.
        let body = Bytes::from(self.chunks.concat());
        let response = CachedResponse {
            status: self.status,
            headers: self.headers,
            body,
            chunks: self.streamed.then_some(lengths),
            created_at: Utc::now(),
            usage: OnceLock::from(usage),
        };
        self.cache.store(self.proxy, self.key, response);
    }
}

impl<S> Stream for MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.upstream).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(meter) = self.meter.as_mut() {
                    meter.observe(chunk);
                }
                if let Some(log) = self.log.as_mut() {
                    log.bytes += chunk.len() as u64;
                }
                if let Some(recorder) = self.recorder.as_mut()
                    && !recorder.push(chunk)
                {
                    self.recorder = None;
                }
            }
            Poll::Ready(None) => {
                if let (Some(usage), Some(recorder)) = (self.settle(), self.recorder.take()) {
                    recorder.finish(usage);
                }
            }
            Poll::Ready(Some(Err(_))) => self.recorder = None,
            Poll::Pending => {}
        }
        polled
    }
}

impl<S> Drop for MeteredBody<S> {
    fn drop(&mut self) {
        self.settle();
    }
}

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");

/// `X-Cache: MISS` with the key, or `BYPASS` when the proxy does not cache.
fn cache_headers(key: Option<&CacheKey>) -> Vec<(HeaderName, HeaderValue)> {
    match key.and_then(|k| HeaderValue::from_str(&k.to_string()).ok()) {
        Some(key) => vec![
            (X_CACHE, HeaderValue::from_static("MISS")),
            (X_CACHE_KEY, key),
        ],
        None => vec![(X_CACHE, HeaderValue::from_static("BYPASS"))],
    }
}

fn replay(hit: &CachedResponse, key: &CacheKey) -> HttpResponse {
    let mut reply = hit.replay();
    reply.insert_header((X_CACHE, "HIT"));
    reply.insert_header((X_CACHE_KEY, key.to_string()));
    match hit.chunks {
        Some(_) => reply.streaming(futures_util::stream::iter(
            hit.body_chunks().into_iter().map(Ok::<_, PayloadError>),
        )),
        None => reply.body(hit.body.clone()),
    }
}

fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("text/event-stream")
                || t.starts_with("application/vnd.amazon.eventstream")
        })
}

/// The failure decisions for this request, and the client address the filter saw; nothing at
/// all when no kind is switched on.
fn decide_faults(
    req: &HttpRequest,
    live: &LiveProxy,
    settings: &Settings,
) -> (Decision, Option<IpAddr>) {
    let faults = live.faults.load();
    let everywhere = settings.get();
    if !faults.is_active() && everywhere.trusted_proxies.is_empty() {
        return (Decision::default(), None);
    }
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded_for = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = faults.client_ip(peer, forwarded_for, |ip| everywhere.trusts(ip));
    if !faults.is_active() {
        return (Decision::default(), Some(client));
    }
    (faults.decide(client, Instant::now()), Some(client))
}

/// Nobody reads this: the client hung up while the proxy waited on purpose.
fn client_left() -> HttpResponse {
    HttpResponse::RequestTimeout().finish()
}

pub fn upstream_client(settings: &UpstreamSettings) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(Arc::clone(&settings.tls))
        .timeout(settings.connect_timeout)
        .limit(0)
        .conn_keep_alive(std::time::Duration::from_secs(60));
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        .timeout(settings.response_timeout)
        .finish()
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, GatewayError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn upstream_host(url: &str) -> String {
    url.split_once("://")
        .map(|(scheme, rest)| {
            let authority = rest.split(['/', '?']).next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        })
        .unwrap_or_else(|| url.to_owned())
}

fn send_error(error: SendRequestError, url: &str, settings: &UpstreamSettings) -> GatewayError {
    let upstream = upstream_host(url);
    match error {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            GatewayError::Timeout {
                upstream,
                seconds: settings.response_timeout.as_secs(),
            }
        }
        SendRequestError::Url(e) => {
            GatewayError::BadRequest(format!("the upstream URL {url} is not valid: {e}"))
        }
        other => GatewayError::Unreachable {
            upstream,
            reason: other.to_string(),
        },
    }
}

/// Runs the pipeline for one request. The log draft comes back unless a streamed answer took
/// it, to be finished when its last byte is sent.
pub async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    spec: &ProxySpec,
    state: &ProxyServerState,
    client: &awc::Client,
    in_flight: InFlight,
    draft: LogDraft,
) -> (Result<HttpResponse, GatewayError>, Option<LogDraft>) {
    let mut draft = Some(draft);
    let outcome = pipeline(req, payload, spec, state, client, in_flight, &mut draft).await;
    (outcome, draft)
}

/// Notes on the draft while it is still here.
fn note(draft: &mut Option<LogDraft>, annotate: impl FnOnce(&mut LogDraft)) {
    if let Some(draft) = draft.as_mut() {
        annotate(draft);
    }
}

async fn pipeline(
    req: &HttpRequest,
    payload: web::Payload,
    spec: &ProxySpec,
    state: &ProxyServerState,
    client: &awc::Client,
    in_flight: InFlight,
    draft: &mut Option<LogDraft>,
) -> Result<HttpResponse, GatewayError> {
    let provider = spec.provider.provider();
    // The body is read first so that even a failed request's log names its model.
    let body = read_body(payload, state.upstream.max_request_bytes).await?;
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    note(draft, |d| d.request(&body, model_of(req.path(), &body)));
    let (decision, client_ip) = decide_faults(req, &state.live, &state.settings);
    if let Some(ip) = client_ip {
        note(draft, |d| d.client_ip(ip));
    }
    if let Some(stall) = decision.stall
        && !faults::wait(req, stall).await
    {
        return Ok(client_left());
    }
    if let Some(injection) = decision.injection {
        note(draft, |d| {
            d.failure(FailureKind::Injected(injection.kind()), None)
        });
        return Ok(faults::inject(req, &state.live, provider, injection).await);
    }

    let key = spec.cache.enabled.then(|| {
        CacheKey::of(
            provider,
            &KeyParts {
                method: req.method(),
                path: req.path(),
                query,
                headers: req.headers(),
                body: &body,
                partition_by_credential: spec.cache.partition_by_credential,
                emulated: spec.emulated(),
            },
        )
    });
    if let Some(key) = &key {
        if let Some(hit) = state
            .cache
            .lookup(spec.id, key, spec.cache.ttl_seconds)
            .await
        {
            if let Some(delay) = decision.response_delay
                && !faults::wait(req, delay).await
            {
                return Ok(client_left());
            }
            note(draft, |d| {
                d.cache("hit", Some(key.to_string()));
                d.stream(hit.chunks.is_some());
                d.usage = *hit.usage.get_or_init(|| stored_usage(provider, &hit));
            });
            return Ok(replay(&hit, key));
        }
        note(draft, |d| d.cache("miss", Some(key.to_string())));
        if spec.cache.mode == CacheMode::ReplayOnly {
            let mut refusal = GatewayError::NotCached.to_response(provider);
            for (name, value) in cache_headers(Some(key)) {
                refusal.headers_mut().insert(name, value);
            }
            note(draft, |d| {
                d.failure(
                    FailureKind::ProxyError,
                    Some(GatewayError::NotCached.to_string()),
                );
            });
            return Ok(refusal);
        }
    }

    if let Some(delay) = decision
        .response_delay
        .filter(|_| !decision.delay_hits_only)
        && !faults::wait(req, delay).await
    {
        return Ok(client_left());
    }

    if spec.emulated() {
        return Ok(emulate(req, spec, state, in_flight, draft, key, &body).await);
    }

    let url = provider.upstream_url(
        spec,
        &state.provider_state,
        req.path(),
        query,
        req.headers(),
    )?;

    let mut headers = HeaderMap::new();
    for (name, value) in forwardable(req.headers()) {
        headers.append(name.clone(), value.clone());
    }
    let mut upstream = UpstreamRequest {
        method: req.method().clone(),
        url,
        headers,
        body,
    };
    provider
        .authorize(spec, &state.provider_state, &mut upstream)
        .await?;

    // Without no_decompress awc would add `Accept-Encoding: identity` to requests that had none.
    let mut request = client
        .request(upstream.method.clone(), upstream.url.as_str())
        .no_decompress();
    for (name, value) in upstream.headers.iter() {
        request = request.append_header((name.clone(), value.clone()));
    }
    note(draft, |d| d.upstream_started = Some(Instant::now()));
    let response = request
        .send_body(upstream.body)
        .await
        .map_err(|e| send_error(e, &upstream.url, &state.upstream))?;
    note(draft, |d| {
        d.upstream_answered = Some(Instant::now());
        d.stream(is_stream(response.headers()));
    });

    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let outgoing = Outgoing::prepare(
        response.status(),
        response.headers(),
        length,
        spec,
        state,
        key,
    );
    Ok(outgoing.send(response, state, in_flight, draft))
}

/// An answer (the upstream's or the emulator's) on its way to the client: its head is ready,
/// its body is read as it arrives for usage and the cache, and the request is logged once the
/// body is done.
struct Outgoing {
    reply: actix_web::HttpResponseBuilder,
    meter: UsageMeter,
    recorder: Option<Recorder>,
    status: u16,
    /// `Content-Length`, kept when the body's length is known.
    length: Option<u64>,
}

impl Outgoing {
    fn prepare(
        status: StatusCode,
        headers: &HeaderMap,
        length: Option<u64>,
        spec: &ProxySpec,
        state: &ProxyServerState,
        key: Option<CacheKey>,
    ) -> Self {
        let mut reply = HttpResponse::build(status);
        let tokens = connection_tokens(headers);
        for (name, value) in headers.iter() {
            if returnable(name, &tokens) {
                reply.append_header((name.clone(), value.clone()));
            }
        }
        let meter = UsageMeter::for_response(spec.provider.provider(), headers);
        let recorder = key.filter(|_| status.is_success()).map(|key| Recorder {
            cache: Arc::clone(&state.cache),
            proxy: spec.id,
            key,
            status: status.as_u16(),
            headers: headers
                .iter()
                .filter(|(name, _)| is_content_header(name.as_str()))
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            streamed: is_stream(headers),
            chunks: Vec::new(),
            size: 0,
        });
        for header in cache_headers(key.as_ref()) {
            reply.insert_header(header);
        }
        Outgoing {
            reply,
            meter,
            recorder,
            status: status.as_u16(),
            length,
        }
    }

    fn send<S>(
        mut self,
        body: S,
        state: &ProxyServerState,
        in_flight: InFlight,
        draft: &mut Option<LogDraft>,
    ) -> HttpResponse
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
    {
        let body = MeteredBody {
            upstream: body,
            meter: Some(self.meter),
            recorder: self.recorder,
            log: draft.take().map(|draft| PendingLog {
                draft,
                telemetry: Arc::clone(&state.telemetry),
                status: self.status,
                bytes: 0,
            }),
            in_flight,
        };
        match self.length {
            Some(length) => self.reply.body(SizedStream::new(length, body)),
            None => self.reply.streaming(body),
        }
    }
}

/// The emulator answers in the upstream's place: no URL, no credentials, the same metering,
/// caching and logging. A whole answer waits its generation time first, as a model would.
async fn emulate(
    req: &HttpRequest,
    spec: &ProxySpec,
    state: &ProxyServerState,
    in_flight: InFlight,
    draft: &mut Option<LogDraft>,
    key: Option<CacheKey>,
    body: &[u8],
) -> HttpResponse {
    note(draft, |d| d.upstream_started = Some(Instant::now()));
    let reply = emulator::answer(
        spec.provider,
        &spec.emulator,
        req.method(),
        req.path(),
        Some(req.query_string()).filter(|q| !q.is_empty()),
        body,
    );
    if !reply.delay.is_zero() && !faults::wait(req, reply.delay).await {
        return client_left();
    }
    note(draft, |d| {
        d.upstream_answered = Some(Instant::now());
        d.stream(is_stream(&reply.headers));
    });
    let outgoing = Outgoing::prepare(
        reply.status,
        &reply.headers,
        reply.body.length(),
        spec,
        state,
        key,
    );
    outgoing.send(reply.body, state, in_flight, draft)
}

/// The usage a cached answer reports: what each of its hits saved.
fn stored_usage(provider: &'static dyn crate::providers::Provider, hit: &CachedResponse) -> Usage {
    let headers: HeaderMap = hit
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::try_from(name.as_str()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
    let mut meter = UsageMeter::for_response(provider, &headers);
    for chunk in hit.body_chunks() {
        meter.observe(&chunk);
    }
    meter.finish()
}
