//! Forwarding: the client's bytes go upstream unchanged (bar hop-by-hop headers and provider
//! credentials), and the upstream's answer streams back without buffering.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_tls::connect::Resolver;
use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use chrono::Utc;
use futures_util::Stream;

use super::error::GatewayError;
use super::headers::{connection_tokens, forwardable, returnable};
use super::reach::MembersResolver;
use super::usage::UsageMeter;
use super::{InFlight, UpstreamSettings};
use crate::cache::{
    CacheKey, CachedResponse, Follower, Leader, MAX_ENTRY_BYTES, Recording, ResponseCache,
    is_content_header,
};
use crate::emulator;
use crate::fixtures::{self, Fixture};
use crate::ids::ProxyId;
use crate::providers::{Provider, ProviderKind, UpstreamRequest, Usage};
use crate::reach::MemberUpstreams;
use crate::spec::StreamReplay;
use crate::telemetry::{LogDraft, Telemetry};

/// The upstream's body on its way to the client. It carries the in-flight guard, so a streamed
/// answer counts until its last byte, and reads usage as chunks pass. Dropping it (the client
/// went away) drops the upstream connection too.
struct MeteredBody<S> {
    upstream: S,
    meter: Option<UsageMeter>,
    recorder: Option<Box<Recorder>>,
    /// A stream too large to keep, still shared with the identical requests following it.
    shared: Option<Leader>,
    /// The bytes still to come when the upstream declared its length: an upstream that closes
    /// before them has cut the answer short (which awc reports as a normal end).
    missing: Option<u64>,
    log: Option<PendingLog>,
    in_flight: InFlight,
}

/// The log entry of a forwarded request, finished with the body.
pub(super) struct PendingLog {
    draft: LogDraft,
    telemetry: Arc<Telemetry>,
    status: u16,
    bytes: u64,
}

impl<S> MeteredBody<S> {
    /// Ends metering once: logs the request and counts the usage and what it cost. Returns the
    /// usage the first time.
    fn settle(&mut self) -> Option<Usage> {
        let usage = self.meter.take()?.finish();
        let cost = self.log.take().and_then(|mut log| {
            log.draft.usage = usage;
            log.telemetry.finish(log.draft, log.status, log.bytes)
        });
        self.in_flight.live().record_usage(usage, cost);
        Some(usage)
    }
}

/// Where a successful answer is kept, and what is kept with it.
pub(super) struct Keeping {
    pub cache: Arc<ResponseCache>,
    pub proxy: ProxyId,
    pub provider: ProviderKind,
    pub key: CacheKey,
    /// Released once the answer is stored (or given up): identical requests wait for it.
    pub leader: Option<Leader>,
    /// The request; usage and chunk timing are added as the answer passes.
    pub recording: Recording,
    /// Written there as a fixture file too.
    pub fixtures_dir: Option<PathBuf>,
}

/// Copies a successful answer as it streams through (chunks are reference-counted, not
/// copied) and stores it once the upstream has sent all of it; an answer cut short is dropped.
pub(super) struct Recorder {
    keeping: Keeping,
    status: u16,
    headers: Vec<(String, String)>,
    streamed: bool,
    chunks: Vec<Bytes>,
    size: usize,
    /// When the last chunk (or the head) arrived.
    last: Instant,
}

impl Recorder {
    /// False once the answer is too large to keep.
    fn push(&mut self, chunk: &Bytes) -> bool {
        if let Some(leader) = &self.keeping.leader {
            leader.publish(chunk);
        }
        self.size += chunk.len();
        self.chunks.push(chunk.clone());
        if self.streamed {
            let now = Instant::now();
            let gap = now.duration_since(self.last).as_millis();
            self.keeping
                .recording
                .chunk_gaps_ms
                .push(u64::try_from(gap).unwrap_or(u64::MAX));
            self.last = now;
        }
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
            gaps_ms: self.keeping.recording.chunk_gaps_ms.clone(),
        };
        let Keeping {
            cache,
            proxy,
            provider,
            key,
            leader,
            mut recording,
            fixtures_dir,
        } = self.keeping;
        recording.usage = usage;
        let fixture =
            fixtures_dir.map(|dir| (dir, Fixture::of(provider, &key, &response, &recording)));
        cache.store(proxy, key, response, Some(&recording));
        // Stored: the requests waiting for this answer find it now, and its followers' streams
        // end.
        if let Some(leader) = leader {
            leader.complete();
        }
        if let Some((dir, fixture)) = fixture {
            fixtures::write_in_background(dir, fixture);
        }
    }
}

impl<S> Stream for MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut polled = Pin::new(&mut self.upstream).poll_next(cx);
        if let (Poll::Ready(None), Some(1..)) = (&polled, self.missing) {
            polled = Poll::Ready(Some(Err(PayloadError::Incomplete(None))));
        }
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(missing) = self.missing.as_mut() {
                    *missing = missing.saturating_sub(chunk.len() as u64);
                }
                if let Some(meter) = self.meter.as_mut() {
                    meter.observe(chunk);
                }
                if let Some(log) = self.log.as_mut() {
                    log.bytes += chunk.len() as u64;
                }
                if let Some(shared) = &self.shared
                    && !shared.publish(chunk)
                {
                    self.shared = None;
                }
                if let Some(recorder) = self.recorder.as_mut()
                    && !recorder.push(chunk)
                {
                    self.shared = self.recorder.take().and_then(|mut recorder| {
                        recorder.keeping.leader.take().filter(Leader::is_followed)
                    });
                }
                // The whole declared length is here: stored before the client has the last
                // byte, so that its next request finds it (the end may be polled after that).
                if self.missing == Some(0) {
                    self.complete();
                }
            }
            Poll::Ready(None) if self.meter.as_ref().is_some_and(|m| !m.is_whole()) => {
                // Cut between two chunks: nothing to keep, and its followers are cut too.
                self.recorder = None;
                self.shared = None;
            }
            Poll::Ready(None) => self.complete(),
            Poll::Ready(Some(Err(_))) => {
                self.recorder = None;
                self.shared = None;
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl<S> MeteredBody<S> {
    /// The answer arrived whole: logged, stored, and its followers' streams ended. Once.
    fn complete(&mut self) {
        if let (Some(usage), Some(recorder)) = (self.settle(), self.recorder.take()) {
            recorder.finish(usage);
        }
        if let Some(shared) = self.shared.take() {
            shared.complete();
        }
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
pub(super) fn cache_headers(key: Option<&CacheKey>) -> Vec<(HeaderName, HeaderValue)> {
    match key.and_then(|k| HeaderValue::from_str(&k.to_string()).ok()) {
        Some(key) => vec![
            (X_CACHE, HeaderValue::from_static("MISS")),
            (X_CACHE_KEY, key),
        ],
        None => vec![(X_CACHE, HeaderValue::from_static("BYPASS"))],
    }
}

/// A stored answer sent again; a stream chunk by chunk, at once or with its recorded gaps
/// (scaled by a speed factor) as `pace` says.
pub(super) fn replay(hit: &CachedResponse, key: &CacheKey, pace: StreamReplay) -> HttpResponse {
    let mut reply = hit.replay();
    reply.insert_header((X_CACHE, "HIT"));
    reply.insert_header((X_CACHE_KEY, key.to_string()));
    let chunks = match hit.chunks {
        Some(_) => hit.body_chunks(),
        None => return reply.body(hit.body.clone()),
    };
    if pace == StreamReplay::Instant || hit.gaps_ms.len() != chunks.len() {
        return reply.streaming(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, PayloadError>),
        ));
    }
    let paced = chunks
        .into_iter()
        .zip(
            hit.gaps_ms
                .iter()
                .map(|gap| Duration::from_millis(pace.wait_ms(*gap))),
        )
        .collect::<Vec<_>>()
        .into_iter();
    reply.streaming(futures_util::stream::unfold(paced, |mut rest| async move {
        let (chunk, wait) = rest.next()?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some((Ok::<_, PayloadError>(chunk), rest))
    }))
}

/// An identical request's stream, chunk by chunk as it arrives from upstream, sent as a hit.
pub(super) fn follow(follower: Follower, key: &CacheKey) -> HttpResponse {
    let mut reply = follower.reply();
    reply.insert_header((X_CACHE, "HIT"));
    reply.insert_header((X_CACHE_KEY, key.to_string()));
    reply.streaming(follower.into_body())
}

/// Nobody reads this: the client hung up while the proxy waited on purpose.
pub(super) fn client_left() -> HttpResponse {
    HttpResponse::RequestTimeout().finish()
}

/// The pooled client of one worker; a member's proxy resolves names through the resolver that
/// keeps it to the addresses members may reach.
pub fn upstream_client(
    settings: &UpstreamSettings,
    members: Option<Arc<MemberUpstreams>>,
) -> awc::Client {
    let resolver = match members {
        Some(members) => Resolver::custom(MembersResolver(members)),
        None => Resolver::default(),
    };
    let connector = awc::Connector::new()
        .connector(actix_tls::connect::Connector::new(resolver).service())
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

/// Sends a request upstream as the provider prepared it; the answer's head is back.
pub(super) async fn send(
    client: &awc::Client,
    upstream: UpstreamRequest,
    settings: &UpstreamSettings,
) -> Result<awc::ClientResponse, GatewayError> {
    // Without no_decompress awc would add `Accept-Encoding: identity` to requests that had none.
    let mut request = client
        .request(upstream.method.clone(), upstream.url.as_str())
        .no_decompress();
    for (name, value) in upstream.headers.iter() {
        request = request.append_header((name.clone(), value.clone()));
    }
    request
        .send_body(upstream.body)
        .await
        .map_err(|e| send_error(e, &upstream.url, settings))
}

/// The client's headers that go upstream (hop-by-hop ones stay here).
pub(super) fn forwarded_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in forwardable(incoming) {
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// The body of an answer on its way to the client: the upstream's, or the emulator's.
pub(super) enum AnswerBody {
    Upstream(awc::ClientResponse),
    Emulated(emulator::Body),
}

impl Stream for AnswerBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            AnswerBody::Upstream(response) => Pin::new(response).poll_next(cx),
            AnswerBody::Emulated(body) => Pin::new(body).poll_next(cx),
        }
    }
}

/// An answer (the upstream's or the emulator's) on its way to the client: its head is ready,
/// its body is read as it arrives for usage and the cache, and the request is logged once the
/// body is done.
pub(super) struct Outgoing {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `Content-Length`, kept when the body's length is known.
    pub length: Option<u64>,
    pub body: AnswerBody,
    /// Whether the answer is a stream (replayed chunk by chunk from the cache).
    pub streamed: bool,
    pub recorder: Option<Box<Recorder>>,
}

impl Outgoing {
    pub fn from_upstream(provider: &dyn Provider, response: awc::ClientResponse) -> Self {
        // The head moves out of the response (which streams only its body from here on)
        // instead of being copied.
        let mut headers = HeaderMap::new();
        let response = response.map_body(|head, payload| {
            headers = std::mem::take(&mut head.headers);
            payload
        });
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Outgoing {
            status: response.status(),
            streamed: provider.is_stream(&headers),
            headers,
            length,
            body: AnswerBody::Upstream(response),
            recorder: None,
        }
    }

    pub fn from_emulator(provider: &dyn Provider, reply: emulator::Reply) -> Self {
        Outgoing {
            status: reply.status,
            streamed: provider.is_stream(&reply.headers),
            length: reply.body.length(),
            headers: reply.headers,
            body: AnswerBody::Emulated(reply.body),
            recorder: None,
        }
    }

    /// Keeps a copy of a successful answer for the cache as it streams through. Anything else
    /// is not kept (and whoever waited for it is released now).
    /// A stream is shared with identical requests from its first chunk.
    pub fn record(&mut self, keeping: Keeping) {
        if !self.status.is_success() {
            return;
        }
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| is_content_header(name.as_str()))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        if let (true, Some(leader)) = (self.streamed, &keeping.leader) {
            leader.begin_stream(self.status.as_u16(), headers.clone());
        }
        self.recorder = Some(Box::new(Recorder {
            keeping,
            last: Instant::now(),
            status: self.status.as_u16(),
            headers,
            streamed: self.streamed,
            chunks: Vec::new(),
            size: 0,
        }));
    }

    /// The response the client gets: the upstream's head (bar hop-by-hop headers) with the
    /// cache status, and a body that meters usage, feeds the recorder and finishes the log.
    pub fn send(
        self,
        provider: &'static dyn Provider,
        key: Option<&CacheKey>,
        in_flight: InFlight,
        log: Option<(LogDraft, Arc<Telemetry>)>,
    ) -> HttpResponse {
        let mut reply = HttpResponse::build(self.status);
        let tokens = connection_tokens(&self.headers);
        for (name, value) in self.headers.iter() {
            if returnable(name, &tokens) {
                reply.append_header((name.clone(), value.clone()));
            }
        }
        for header in cache_headers(key) {
            reply.insert_header(header);
        }
        let body = MeteredBody {
            upstream: self.body,
            meter: Some(UsageMeter::for_response(provider, &self.headers)),
            recorder: self.recorder,
            shared: None,
            missing: self.length,
            log: log.map(|(draft, telemetry)| PendingLog {
                draft,
                telemetry,
                status: self.status.as_u16(),
                bytes: 0,
            }),
            in_flight,
        };
        match self.length {
            Some(length) => reply.body(SizedStream::new(length, body)),
            None => reply.streaming(body),
        }
    }
}

/// The usage a cached answer reports: what each of its hits saved.
pub(super) fn stored_usage(provider: &'static dyn Provider, hit: &CachedResponse) -> Usage {
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
