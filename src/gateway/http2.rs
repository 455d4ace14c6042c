//! HTTP/2 cleartext by prior knowledge (RFC 9113 §3.3), as the AWS SDK for JavaScript v3 speaks
//! to `http://` endpoints.
//!
//! Each stream is one call of the app service in a task of its own. A stream the client resets
//! (or whose connection ends) fires the request's [`StreamReset`], which is what hung requests
//! wait on; the pipeline then finishes as it does when an HTTP/1.1 client leaves, and its answer
//! is dropped. The connection's other streams go on.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_http::{HttpMessage, Payload, Request, Response};
use actix_server::GracefulShutdownSignal;
use actix_service::Service;
use actix_web::dev::ServiceResponse;
use actix_web::rt::net::TcpStream;
use actix_web::web::Bytes;
use futures_util::Stream;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::connection::StreamReset;

/// What a connection starts with when it speaks HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Flow-control windows: the protocol's 64 KiB default would hold back large request bodies.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Whether the connection's first bytes are the HTTP/2 preface. Only peeks, so an HTTP/1.1
/// dispatcher still reads everything.
pub async fn starts_with_preface(io: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; PREFACE.len()];
    loop {
        let n = io.peek(&mut first).await?;
        if n == 0 || first[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // The preface arrived split; peeking again at once would only see the same bytes.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "lives for one match; boxing would allocate per stream"
)]
enum ConnectionEvent {
    Stream(Result<(http::Request<RecvStream>, SendResponse<Bytes>), h2::Error>),
    Closed,
    ShutdownStarted,
}

/// Serves one HTTP/2 connection until the client closes it or a graceful stop has drained it.
pub async fn serve<S>(
    io: TcpStream,
    app: Rc<S>,
    peer: Option<SocketAddr>,
    shutdown: GracefulShutdownSignal,
) where
    S: Service<Request, Response = ServiceResponse, Error = actix_web::Error> + 'static,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .handshake::<_, Bytes>(io)
        .await;
    let mut connection = match handshake {
        Ok(connection) => connection,
        Err(error) => {
            log::debug!("HTTP/2 handshake with {peer:?} failed: {error}");
            return;
        }
    };
    let mut shutdown_started = pin!(shutdown.notified());
    let mut draining = false;
    loop {
        let event = poll_fn(|cx| {
            if !draining && shutdown_started.as_mut().poll(cx).is_ready() {
                return Poll::Ready(ConnectionEvent::ShutdownStarted);
            }
            connection.poll_accept(cx).map(|accepted| match accepted {
                Some(stream) => ConnectionEvent::Stream(stream),
                None => ConnectionEvent::Closed,
            })
        })
        .await;
        match event {
            ConnectionEvent::Stream(Ok((request, respond))) => {
                actix_web::rt::spawn(answer(request, respond, Rc::clone(&app), peer));
            }
            ConnectionEvent::Stream(Err(error)) => {
                log::debug!("HTTP/2 connection from {peer:?} failed: {error}");
                return;
            }
            ConnectionEvent::Closed => return,
            // GOAWAY: no new streams; the connection closes once the open ones are answered.
            ConnectionEvent::ShutdownStarted => {
                connection.graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// One stream: the request through the app, the answer back unless the client reset it.
async fn answer<S>(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    app: Rc<S>,
    peer: Option<SocketAddr>,
) where
    S: Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let (parts, body) = request.into_parts();
    let (Ok(method), Ok(uri)) = (
        actix_http::Method::from_bytes(parts.method.as_str().as_bytes()),
        parts.uri.to_string().parse::<actix_http::Uri>(),
    ) else {
        respond.send_reset(Reason::PROTOCOL_ERROR);
        return;
    };
    let payload: actix_http::BoxedPayloadStream = Box::pin(RequestBody(body));
    let mut request = Request::with_payload(Payload::from(payload));
    let head = request.head_mut();
    head.uri = uri;
    head.method = method;
    head.version = actix_http::Version::HTTP_2;
    head.headers = to_actix_headers(&parts.headers);
    head.peer_addr = peer;
    let head_only = head.method == actix_http::Method::HEAD;
    let reset = StreamReset::default();
    request.extensions_mut().insert(reset.clone());

    let mut call = pin!(app.call(request));
    let mut reset_seen = false;
    let outcome = poll_fn(|cx| {
        if let Poll::Ready(outcome) = call.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        if !reset_seen && respond.poll_reset(cx).is_ready() {
            reset_seen = true;
            // Wakes this task again through the pipeline's wait on the reset.
            reset.fire();
        }
        Poll::Pending
    })
    .await;
    if reset_seen {
        return;
    }
    let response: Response<BoxBody> = match outcome {
        Ok(response) => response.into(),
        Err(error) => error.into(),
    };
    send(response, respond, head_only).await;
}

async fn send(response: Response<BoxBody>, mut respond: SendResponse<Bytes>, head_only: bool) {
    let (response, body) = response.into_parts();
    let size = body.size();
    let head = response_head(&response, size);
    let end_of_stream = head_only || size.is_eof();
    let mut stream = match respond.send_response(head, end_of_stream) {
        Ok(stream) => stream,
        Err(error) => {
            log::debug!("HTTP/2 response head not sent: {error}");
            return;
        }
    };
    if end_of_stream {
        return;
    }
    let mut body = pin!(body);
    loop {
        let next = poll_fn(|cx| {
            // A reset while the body waits for its next chunk (a stalled upstream) ends it now.
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            body.as_mut().poll_next(cx).map(Some)
        })
        .await;
        match next {
            None => return,
            Some(None) => {
                if let Err(error) = stream.send_data(Bytes::new(), true) {
                    log::debug!("HTTP/2 stream not ended: {error}");
                }
                return;
            }
            Some(Some(Err(error))) => {
                log::debug!("HTTP/2 response body failed: {error}");
                stream.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Some(Ok(chunk))) => {
                if let Err(error) = send_chunk(&mut stream, chunk).await {
                    log::debug!("HTTP/2 response body not sent: {error}");
                    return;
                }
            }
        }
    }
}

/// Sends one chunk as the client's flow-control window allows.
async fn send_chunk(stream: &mut SendStream<Bytes>, mut chunk: Bytes) -> Result<(), h2::Error> {
    while !chunk.is_empty() {
        stream.reserve_capacity(chunk.len());
        match poll_fn(|cx| stream.poll_capacity(cx)).await {
            None => return Err(h2::Error::from(Reason::CANCEL)),
            Some(capacity) => {
                let capacity = capacity?;
                let part = chunk.split_to(capacity.min(chunk.len()));
                stream.send_data(part, false)?;
            }
        }
    }
    Ok(())
}

/// The HTTP/2 response head: connection-specific headers left out (RFC 9113 §8.2.2), the body's
/// length and a date added as HTTP/1.1 responses have them.
fn response_head(response: &Response<()>, size: BodySize) -> http::Response<()> {
    let mut head = http::Response::new(());
    *head.status_mut() = http::StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *head.version_mut() = http::Version::HTTP_2;
    let headers = head.headers_mut();
    for (name, value) in response.headers() {
        let connection_specific = [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::CONTENT_LENGTH,
        ]
        .contains(name)
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection";
        if !connection_specific
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            )
        {
            headers.append(name, value);
        }
    }
    if let BodySize::Sized(length) = size
        && response.status() != actix_http::StatusCode::NO_CONTENT
    {
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(length),
        );
    }
    if !headers.contains_key(http::header::DATE)
        && let Ok(date) = http::HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now()))
    {
        headers.insert(http::header::DATE, date);
    }
    head
}

/// h2 speaks `http` 1.x, actix-http 0.2: the same names and bytes, other types.
fn to_actix_headers(headers: &http::HeaderMap) -> HeaderMap {
    let mut converted = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            converted.append(name, value);
        }
    }
    converted
}

/// The request body as actix's payload, handing flow-control credit back as it is read.
struct RequestBody(RecvStream);

impl Stream for RequestBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let stream = &mut self.get_mut().0;
        match std::task::ready!(stream.poll_data(cx)) {
            Some(Ok(chunk)) => Poll::Ready(Some(
                stream
                    .flow_control()
                    .release_capacity(chunk.len())
                    .map(|()| chunk)
                    .map_err(payload_error),
            )),
            Some(Err(error)) => Poll::Ready(Some(Err(payload_error(error)))),
            None => Poll::Ready(None),
        }
    }
}

fn payload_error(error: h2::Error) -> PayloadError {
    PayloadError::Io(std::io::Error::other(error))
}
