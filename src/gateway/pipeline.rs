//! The pipeline every request to a proxy port runs, one function per stage, in the order of
//! the design: IP filter → rate limit → timeout → error → cache lookup → spend cap → delay →
//! upstream → store → breakage → log. A stage that answers ends the request there; breakage
//! (faults inside the answer's body) and the log always run.
//!
//! Where each stage's logic lives:
//! - IP filter, rate limit, timeout, error and delay decide in `crate::faults` (the seeded dice
//!   are rolled, or the script read, once, at the timeout stage; per scenario) and are carried
//!   out in `gateway/faults.rs`; a connection reset happens at the error stage, faults inside
//!   streams and bodies at the breakage stage (`gateway/breakage.rs`);
//! - cache lookup and store: keys and entries in `crate::cache`, the recorder that copies an
//!   answer as it streams in `gateway/forward.rs`;
//! - spend cap: today's live spend is counted in `gateway/spend.rs`, fed when a forwarded
//!   answer's cost is known (`gateway/forward.rs`, priced by `crate::telemetry`);
//! - upstream: the provider (`crate::providers`) names the URL and sets the credentials,
//!   `gateway/forward.rs` sends and streams back; or the emulator (`crate::emulator`) answers;
//! - log: `crate::telemetry`, finished when the answer's last byte is sent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};

use super::body::{self, Reservation};
use super::breakage::{self, BodyFault};
use super::error::GatewayError;
use super::faults;
use super::forward::{
    Keeping, Outgoing, cache_headers, client_left, follow, forwarded_headers, replay, send,
    stored_usage,
};
use super::reach;
use super::{InFlight, ProxyServerState, SpendCap};
use crate::cache::{
    self, CacheKey, CachedResponse, Follower, Handling, KeyParts, Leader, RecordedRequest,
    Recording, RequestControl,
};
use crate::emulator;
use crate::faults::{self as failures, ConnectionFault, Decision, Faults, Injection, Outcome};
use crate::forwarded;
use crate::providers::{Provider, UpstreamRequest, UpstreamTarget};
use crate::spec::{CacheMode, ProxySpec};
use crate::telemetry::{FailureKind, LogDraft, model_of};

/// One request on its way through the stages: what they all read, and what earlier stages
/// found out for later ones.
struct Exchange<'a> {
    req: &'a HttpRequest,
    state: &'a ProxyServerState,
    client: &'a awc::Client,
    /// The configuration as it was when the request arrived; an edit applies to the next one.
    spec: Arc<ProxySpec>,
    provider: &'static dyn Provider,
    faults: Arc<Faults>,
    body: Bytes,
    /// The body's share of the memory all bodies being received may hold, kept until the
    /// request is done with its body.
    body_reservation: Reservation,
    decision: Decision,
    /// The `X-Rubberduck-*` cache headers of the request.
    control: RequestControl,
    /// The test whose own failures this request gets (`X-Rubberduck-Scenario`).
    scenario: Option<String>,
    /// The failure the request asks for itself (`X-Rubberduck-Fault`), where allowed.
    requested: Option<Outcome>,
    /// The model the request names, for its log entry and its recording.
    model: Option<String>,
    /// Set when the answer is to be stored (and sent with `X-Cache: MISS`).
    key: Option<CacheKey>,
    /// Held while this request fetches an answer identical requests wait for.
    leader: Option<Leader>,
    /// Taken by a streamed answer's body, which logs when its last byte is sent.
    draft: Option<LogDraft>,
    /// Counts the request as in flight; a streamed answer's body carries it to the end.
    in_flight: InFlight,
}

/// What the stages produced: an answer made here, or one on its way from upstream.
enum Answer {
    Ready(HttpResponse),
    Streaming(Outgoing),
}

/// What the cache lookup found.
enum Lookup {
    Hit(Hit, CacheKey),
    Miss,
    /// A replay-only proxy has no answer and sends nothing upstream.
    Refused(HttpResponse),
}

/// An answer that costs nothing: stored, or streaming to an identical request right now.
enum Hit {
    Stored(Arc<CachedResponse>),
    Live(Follower),
}

/// Runs one request through the pipeline.
pub(super) async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyServerState,
    client: &awc::Client,
) -> HttpResponse {
    let mut exchange = Exchange::start(req, state, client);
    let answer = match stages(&mut exchange, payload).await {
        Ok(answer) => answer,
        Err(error) => Answer::Ready(exchange.refuse(&error)),
    };
    log(exchange, answer)
}

async fn stages(x: &mut Exchange<'_>, payload: web::Payload) -> Result<Answer, GatewayError> {
    read_request(x, payload).await?;
    if let Some(answer) = ip_filter(x).await {
        return Ok(answer);
    }
    if let Some(answer) = rate_limit(x).await {
        return Ok(answer);
    }
    if let Some(answer) = timeout(x).await {
        return Ok(answer);
    }
    if let Some(answer) = error(x).await {
        return Ok(answer);
    }
    let hit = match cache_lookup(x).await? {
        Lookup::Hit(hit, key) => Some((hit, key)),
        Lookup::Miss => None,
        Lookup::Refused(refusal) => return Ok(Answer::Ready(refusal)),
    };
    if let Some(answer) = spend_cap(x, hit.is_some()) {
        return Ok(answer);
    }
    if let Some(answer) = delay(x, hit.is_some()).await {
        return Ok(answer);
    }
    if let Some((hit, key)) = hit {
        return Ok(replay_hit(x, hit, &key));
    }
    let answer = upstream(x).await?;
    Ok(store(x, answer))
}

impl<'a> Exchange<'a> {
    fn start(req: &'a HttpRequest, state: &'a ProxyServerState, client: &'a awc::Client) -> Self {
        let in_flight = InFlight::enter(&state.live);
        state.live.count_request();
        let spec = state.live.spec.load_full();
        Exchange {
            req,
            state,
            client,
            provider: spec.provider.provider(),
            draft: Some(LogDraft::start(req, &spec)),
            faults: state.live.faults.load_full(),
            spec,
            body: Bytes::new(),
            body_reservation: Reservation::default(),
            decision: Decision::default(),
            control: RequestControl::default(),
            scenario: None,
            requested: None,
            model: None,
            key: None,
            leader: None,
            in_flight,
        }
    }

    /// Notes on the log entry while it is still here.
    fn note(&mut self, annotate: impl FnOnce(&mut LogDraft)) {
        if let Some(draft) = self.draft.as_mut() {
            annotate(draft);
        }
    }

    /// Logs an injected failure with its kind, and the scenario it belongs to.
    fn note_injected(&mut self, kind: &'static str) {
        let scenario = self.scenario.clone();
        self.note(|d| {
            d.failure(FailureKind::Injected(kind), None);
            d.scenario(scenario);
        });
    }

    /// The answer for an injected failure, after any wait it involves.
    async fn inject(&mut self, injection: Injection) -> Answer {
        self.note_injected(injection.kind());
        Answer::Ready(faults::inject(self.req, &self.state.live, self.provider, injection).await)
    }

    /// The proxy's own error, in the provider's shape.
    fn refuse(&mut self, error: &GatewayError) -> HttpResponse {
        log::debug!("proxy {}: {error}", self.spec.id);
        self.note(|d| d.failure(FailureKind::ProxyError, Some(error.to_string())));
        error.to_response(self.provider)
    }

    fn target(&self) -> UpstreamTarget<'_> {
        UpstreamTarget {
            proxy_name: &self.spec.name,
            base_url: self.spec.upstream_url.as_deref(),
            region: self.spec.aws_region.as_deref(),
            key_file: self.spec.vertex_service_account_file.as_deref(),
            restricted: self.state.members.is_some(),
        }
    }

    fn query(&self) -> Option<&'a str> {
        Some(self.req.query_string()).filter(|q| !q.is_empty())
    }
}

/// Reads the whole request body first, so that even a failed request's log names its model.
async fn read_request(x: &mut Exchange<'_>, payload: web::Payload) -> Result<(), GatewayError> {
    let declared = x
        .req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (body, reservation) = body::receive(payload, declared, &x.state.upstream.bodies).await?;
    x.body = body;
    x.body_reservation = reservation;
    x.model = model_of(x.provider, x.req.path(), &x.body);
    let model = x.model.clone();
    if let Some(draft) = x.draft.as_mut() {
        draft.request(&x.body, model);
    }
    x.control = RequestControl::of(x.req.headers()).map_err(GatewayError::BadRequest)?;
    let scenario = x.req.headers().get(failures::SCENARIO_HEADER);
    x.scenario =
        failures::scenario_of(scenario.map(|v| v.as_bytes())).map_err(GatewayError::BadRequest)?;
    // Every request of a test carries its scenario in the log, the ones that pass too.
    let scenario = x.scenario.clone();
    x.note(|d| d.scenario(scenario));
    if x.faults.config().allow_request_faults
        && let Some(value) = x.req.headers().get(failures::FAULT_HEADER)
    {
        let value = value.to_str().unwrap_or_default();
        x.requested = Some(failures::parse_request_fault(value).map_err(GatewayError::BadRequest)?);
    }
    Ok(())
}

/// Finds the client (behind trusted reverse proxies) for the log and the IP filter, and
/// answers 403 to a blocked one. Nothing is looked at when no failure kind is on and no
/// reverse proxy is trusted.
async fn ip_filter(x: &mut Exchange<'_>) -> Option<Answer> {
    let trusted = x.state.trusted_proxies.current();
    if !x.faults.is_active() && trusted.is_empty() {
        return None;
    }
    let peer = x
        .req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded_for = forwarded::forwarded_for(x.req.headers());
    let client = x.faults.client_ip(peer, forwarded_for.as_deref(), |ip| {
        trusted.iter().any(|net| net.contains(&ip))
    });
    x.note(|d| d.client_ip(client));
    let blocked = x.faults.filter_ip(client)?;
    Some(x.inject(blocked).await)
}

/// Answers 429 when the proxy's sliding window is full.
async fn rate_limit(x: &mut Exchange<'_>) -> Option<Answer> {
    let limited = x.faults.limit_rate(Instant::now(), x.scenario.as_deref())?;
    Some(x.inject(limited).await)
}

/// Rolls the failure dice for this request (or reads its scenario's script, or takes the fault
/// it asks for), then waits out a `delay` timeout, or answers a hanging or 504 one.
async fn timeout(x: &mut Exchange<'_>) -> Option<Answer> {
    if !x.faults.is_active() && x.requested.is_none() {
        return None;
    }
    x.decision = x.faults.roll(x.scenario.as_deref(), x.requested);
    if let Some(stall) = x.decision.stall
        && !faults::wait(x.req, stall).await
    {
        return Some(Answer::Ready(client_left()));
    }
    let timeout = x.decision.timeout?;
    Some(x.inject(timeout).await)
}

/// Answers the injected error the dice picked, in the provider's shape; or resets the
/// connection before any answer.
async fn error(x: &mut Exchange<'_>) -> Option<Answer> {
    if x.decision.connection == Some(ConnectionFault::Reset) {
        x.note_injected(ConnectionFault::Reset.kind());
        return Some(Answer::Ready(breakage::reset(x.req)));
    }
    let error = x.decision.error?;
    Some(x.inject(error).await)
}

/// Looks the request up in the proxy's cache, when it caches: in the proxy's mode, or the
/// one the request's `X-Rubberduck-Cache` header asks for, under its cassette.
async fn cache_lookup(x: &mut Exchange<'_>) -> Result<Lookup, GatewayError> {
    if !x.spec.cache.enabled {
        return Ok(Lookup::Miss);
    }
    let mode = match x
        .control
        .handling(x.spec.cache.mode)
        .map_err(GatewayError::BadRequest)?
    {
        Handling::Bypass => return Ok(Lookup::Miss),
        Handling::Mode(mode) => mode,
    };
    let key = CacheKey::of(
        x.provider,
        &KeyParts {
            method: x.req.method(),
            path: x.req.path(),
            query: x.query(),
            headers: x.req.headers(),
            body: &x.body,
            partition_by_credential: x.spec.cache.partition_by_credential,
            emulated: x.spec.emulated(),
            cassette: x.control.cassette.as_deref(),
            ignore_fields: &x.spec.cache.ignore_fields,
        },
    );
    let name = key.to_string();
    if mode == CacheMode::Refresh {
        x.key = Some(key);
        x.note(|d| d.cache("miss", Some(name)));
        return Ok(Lookup::Miss);
    }
    let found = x
        .state
        .cache
        .lookup(
            x.spec.id,
            &key,
            x.spec.cache.ttl_seconds,
            mode == CacheMode::ReadWrite,
        )
        .await;
    let leader = match found {
        cache::Lookup::Hit(hit) => return Ok(Lookup::Hit(Hit::Stored(hit), key)),
        cache::Lookup::Follow(follower) => return Ok(Lookup::Hit(Hit::Live(follower), key)),
        cache::Lookup::Miss(leader) => leader,
    };
    x.key = Some(key);
    x.leader = leader;
    x.note(|d| d.cache("miss", Some(name)));
    if mode == CacheMode::ReplayOnly {
        let nearest = explain_miss(x).await;
        let mut refusal = x.refuse(&GatewayError::NotCached { nearest });
        for (name, value) in cache_headers(x.key.as_ref()) {
            refusal.headers_mut().insert(name, value);
        }
        return Ok(Lookup::Refused(refusal));
    }
    Ok(Lookup::Miss)
}

/// What the nearest recorded entry says about a replay-only miss, in one line.
async fn explain_miss(x: &Exchange<'_>) -> Option<String> {
    let request = RecordedRequest::of(
        x.provider,
        x.req.method().as_str(),
        x.req.path(),
        x.query(),
        &x.body,
    );
    let found = x
        .state
        .cache
        .explain(
            x.spec.id,
            request,
            x.model.clone(),
            x.control.cassette.clone(),
            x.spec.cache.ignore_fields.clone(),
            1,
        )
        .await;
    match found {
        Ok(nearest) => nearest.first().map(cache::Nearest::describe),
        Err(e) => {
            log::warn!(
                "proxy {}: cannot look for the nearest entry: {e}",
                x.spec.id
            );
            None
        }
    }
}

/// Refuses a miss, in the provider's 429 shape, once the proxy's live spend of the UTC day has
/// reached its daily cap: nothing more goes upstream (or to the emulator) today. Hits were found
/// before and are still served.
fn spend_cap(x: &mut Exchange<'_>, hit: bool) -> Option<Answer> {
    if hit {
        return None;
    }
    let cap_usd = x.spec.daily_spend_cap_usd?;
    let cap = SpendCap::reached(cap_usd, x.state.live.spent_today_usd())?;
    let error = GatewayError::SpendCapReached {
        cap_usd: cap.cap_usd,
        spent_usd: cap.spent_usd,
    };
    log::debug!("proxy {}: {error}", x.spec.id);
    // Identical requests waiting for this one's answer look again (and are refused too).
    x.leader = None;
    x.note(|d| d.failure(FailureKind::SpendCap, Some(error.to_string())));
    let mut refusal = error.to_response(x.provider);
    for (name, value) in cache_headers(x.key.as_ref()) {
        refusal.headers_mut().insert(name, value);
    }
    Some(Answer::Ready(refusal))
}

/// Waits the response delay before a cache hit, and before a miss unless the delay is for hits
/// only; answers only when the client left meanwhile.
async fn delay(x: &mut Exchange<'_>, hit: bool) -> Option<Answer> {
    let delay = x
        .decision
        .response_delay
        .filter(|_| hit || !x.decision.delay_hits_only)?;
    (!faults::wait(x.req, delay).await).then(|| Answer::Ready(client_left()))
}

/// The cached answer, replayed as it was first sent (chunk by chunk for streams); or an
/// identical request's stream as it arrives.
fn replay_hit(x: &mut Exchange<'_>, hit: Hit, key: &CacheKey) -> Answer {
    let provider = x.provider;
    let name = key.to_string();
    let hit = match hit {
        Hit::Stored(hit) => hit,
        Hit::Live(follower) => {
            x.note(|d| {
                d.cache("hit", Some(name));
                d.stream(true);
            });
            return Answer::Ready(follow(follower, key));
        }
    };
    let response = replay(&hit, key, x.spec.cache.stream_replay);
    x.note(|d| {
        d.cache("hit", Some(name));
        d.stream(hit.chunks.is_some());
        d.usage = *hit.usage.get_or_init(|| stored_usage(provider, &hit));
    });
    Answer::Ready(response)
}

/// Sends the request to the provider (or lets the emulator answer) and starts streaming the
/// answer back.
async fn upstream(x: &mut Exchange<'_>) -> Result<Answer, GatewayError> {
    if x.spec.emulated() {
        return Ok(emulate(x).await);
    }
    if has_dot_segments(x.req.path()) {
        return Err(GatewayError::BadRequest(
            "the path has “.” or “..” segments, which no provider API uses; they are not sent upstream"
                .into(),
        ));
    }
    let provider = x.provider;
    let target = x.target();
    let provider_state = &x.state.provider_state;
    let url = provider.upstream_url(
        &target,
        provider_state,
        x.req.path(),
        x.query(),
        x.req.headers(),
    )?;
    reach::check_url(&url, x.state.members.as_deref())?;
    let mut request = UpstreamRequest {
        method: x.req.method().clone(),
        url,
        headers: forwarded_headers(x.req.headers()),
        body: x.body.clone(),
    };
    provider
        .authorize(&target, provider_state, &mut request)
        .await?;
    x.note(|d| d.upstream_started = Some(Instant::now()));
    let response = send(x.client, request, &x.state.upstream).await?;
    let outgoing = Outgoing::from_upstream(provider, response);
    x.note(|d| {
        d.upstream_answered = Some(Instant::now());
        d.stream(outgoing.streamed);
    });
    Ok(Answer::Streaming(outgoing))
}

/// Whether a path has `.` or `..` segments, written plainly or percent-encoded: forwarded as
/// they are, an upstream (or a server in front of it) could resolve them to another path.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    })
}

/// The emulator answers in the upstream's place: no URL, no credentials, the same metering,
/// caching and logging. A whole answer waits its generation time first, as a model would.
async fn emulate(x: &mut Exchange<'_>) -> Answer {
    x.note(|d| d.upstream_started = Some(Instant::now()));
    let reply = x.provider.emulate(&emulator::Request {
        method: x.req.method(),
        path: x.req.path(),
        query: x.query(),
        body: &x.body,
        settings: &x.spec.emulator,
    });
    if !reply.delay.is_zero() && !faults::wait(x.req, reply.delay).await {
        return Answer::Ready(client_left());
    }
    let outgoing = Outgoing::from_emulator(x.provider, reply);
    x.note(|d| {
        d.upstream_answered = Some(Instant::now());
        d.stream(outgoing.streamed);
    });
    Answer::Streaming(outgoing)
}

/// Keeps a successful answer in the cache once all of it has passed through, with what a
/// fixture file needs: the request (never its headers), cassette and model; and, when the
/// proxy is bound to a fixtures directory, as a file there too.
fn store(x: &mut Exchange<'_>, answer: Answer) -> Answer {
    // An answer with an injected fault in its body is not kept: a cut one could not be, and a
    // whole one would keep its injected waits (a stall, a drip) in the recorded pace that
    // replays reproduce. Identical requests waiting for it look again. A bandwidth limit is
    // the exception: it may hold for every answer, and a proxy that never cached would be
    // worse than a recorded pace that includes the limit.
    if body_fault(x, &answer).is_some_and(|fault| {
        !matches!(
            fault,
            BodyFault::Connection(ConnectionFault::Bandwidth { .. })
        )
    }) {
        x.leader = None;
        return answer;
    }
    match (answer, x.key) {
        (Answer::Streaming(mut outgoing), Some(key)) => {
            let request = RecordedRequest::of(
                x.provider,
                x.req.method().as_str(),
                x.req.path(),
                x.query(),
                &x.body,
            );
            outgoing.record(Keeping {
                cache: Arc::clone(&x.state.cache),
                proxy: x.spec.id,
                provider: x.spec.provider,
                key,
                leader: x.leader.take(),
                recording: Recording {
                    cassette: x.control.cassette.clone(),
                    request,
                    model: x.model.clone(),
                    ..Recording::default()
                },
                fixtures_dir: x.spec.cache.fixtures_dir.clone(),
            });
            Answer::Streaming(outgoing)
        }
        (answer, _) => answer,
    }
}

/// The fault the decision puts inside this answer's body: stream faults apply to streams only,
/// connection faults to any answer that has a body to break.
fn body_fault(x: &Exchange<'_>, answer: &Answer) -> Option<BodyFault> {
    let (stream, streamed) = match answer {
        Answer::Ready(response) => (
            breakage::is_stream(response),
            response.status().is_success(),
        ),
        Answer::Streaming(outgoing) => (outgoing.streamed, true),
    };
    match (x.decision.stream, x.decision.connection) {
        (Some(fault), _) if stream => Some(BodyFault::Stream(fault)),
        (_, Some(fault)) if fault != ConnectionFault::Reset && streamed => {
            Some(BodyFault::Connection(fault))
        }
        _ => None,
    }
}

/// The fault inside this answer's body, noted on its log entry.
fn breakage(x: &mut Exchange<'_>, answer: &Answer) -> Option<BodyFault> {
    let fault = body_fault(x, answer)?;
    let kind = match fault {
        BodyFault::Stream(fault) => fault.kind(),
        BodyFault::Connection(fault) => fault.kind(),
    };
    x.note_injected(kind);
    Some(fault)
}

/// Logs the request: at once for answers made here (hits, injected failures, refusals), and
/// for a forwarded answer when its body has been sent. Faults inside the body are carried out
/// on the way.
fn log(mut x: Exchange<'_>, answer: Answer) -> HttpResponse {
    let fault = breakage(&mut x, &answer);
    let provider = x.provider;
    let response = finish(x, answer);
    match fault {
        Some(fault) => breakage::apply(response, fault, provider),
        None => response,
    }
}

/// Finishes the log entry of an answer made here, or hands it to the forwarded answer's body.
fn finish(x: Exchange<'_>, answer: Answer) -> HttpResponse {
    let Exchange {
        state,
        provider,
        draft,
        key,
        in_flight,
        ..
    } = x;
    match answer {
        Answer::Ready(response) => {
            if let Some(draft) = draft {
                let size = match response.body().size() {
                    BodySize::Sized(n) => n,
                    _ => 0,
                };
                state
                    .telemetry
                    .finish(draft, response.status().as_u16(), size);
            }
            response
        }
        Answer::Streaming(outgoing) => {
            let log = draft.map(|draft| (draft, Arc::clone(&state.telemetry)));
            outgoing.send(provider, key.as_ref(), in_flight, log)
        }
    }
}
