//! Carrying out faults inside an answer's body and at its connection: a stream cut, stalled,
//! dripped or ended by the provider's error event after a number of whole events; a body
//! truncated, closed after its head or held to a bandwidth; a connection reset before any
//! response. The same for upstream streams, cache replays and the emulator: they all pass here
//! as the response the client gets.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use tokio::time::{Instant, Sleep};

use super::connection::ClientSocket;
use crate::faults::{ConnectionFault, StreamFault};
use crate::providers::Provider;

/// How long a cut waits for what was sent before it to leave.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(5);
/// Bandwidth-limited bodies go out in pieces of about this share of a second.
const BANDWIDTH_SLICE: f64 = 0.05;

/// The fault a body carries out.
#[derive(Debug, Clone, Copy)]
pub(super) enum BodyFault {
    Stream(StreamFault),
    Connection(ConnectionFault),
}

/// Whether `response` is a stream that stream faults apply to.
pub(super) fn is_stream(response: &HttpResponse) -> bool {
    content_type(response).is_some_and(|t| {
        t.starts_with("text/event-stream") || t.starts_with("application/vnd.amazon.eventstream")
    })
}

fn content_type(response: &HttpResponse) -> Option<&str> {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// `response` with its body carrying out `fault`.
pub(super) fn apply(
    response: HttpResponse,
    fault: BodyFault,
    provider: &'static dyn Provider,
) -> HttpResponse {
    let framer = match content_type(&response) {
        Some(t) if t.starts_with("text/event-stream") => Framer::Sse { recent: Vec::new() },
        Some(t) if t.starts_with("application/vnd.amazon.eventstream") => Framer::EventStream {
            buffer: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
        },
        _ => Framer::Chunks,
    };
    let error_event = provider.stream_error_event();
    response.map_body(|_, inner| BoxBody::new(FaultedBody::new(inner, fault, framer, error_event)))
}

/// Resets the request's connection (TCP RST, nothing sent) when its socket is at hand: the
/// answer returned is never written. Over HTTP/2 the stream is reset instead, as the answer's
/// body fails before its first byte.
pub(super) fn reset(req: &HttpRequest) -> HttpResponse {
    if let Some(socket) = req.conn_data::<ClientSocket>() {
        socket.reset_on_close();
    }
    let mut body = FaultedBody::new(
        BoxBody::new(()),
        BodyFault::Connection(ConnectionFault::CloseAfterHead),
        Framer::Chunks,
        Bytes::new(),
    );
    // Nothing may go out before a reset, not even the head.
    body.flushed = true;
    HttpResponse::Ok().body(BoxBody::new(body))
}

/// Splits a body into pieces that each end where an event ends (or where a chunk ends, when
/// the last event is not complete yet), so faults count whole events.
enum Framer {
    /// An SSE event ends at an empty line; only where it ends is looked for (a parser reports
    /// an event only once the next bytes arrive). `recent` holds the last bytes of the previous
    /// chunk, for an empty line split across chunks.
    Sse { recent: Vec<u8> },
    EventStream {
        buffer: BytesMut,
        decoder: MessageFrameDecoder,
    },
    /// Not a stream: every chunk counts as one event.
    Chunks,
}

impl Framer {
    /// The pieces of `chunk`, each with whether it ends an event.
    fn split(&mut self, chunk: Bytes) -> Vec<(Bytes, bool)> {
        let mut ends = Vec::new();
        match self {
            Framer::Chunks => return vec![(chunk, true)],
            Framer::Sse { recent } => {
                for (index, byte) in chunk.iter().enumerate() {
                    recent.push(*byte);
                    if recent.len() > 4 {
                        recent.remove(0);
                    }
                    let tail = recent.as_slice();
                    let empty_line = tail.ends_with(b"\r\n\r\n")
                        || (tail.ends_with(b"\n\n") && !tail.ends_with(b"\r\n\n"))
                        || tail.ends_with(b"\r\r");
                    if empty_line {
                        ends.push(index + 1);
                        recent.clear();
                    }
                }
            }
            Framer::EventStream { buffer, decoder } => {
                let before = buffer.len();
                buffer.extend_from_slice(&chunk);
                let mut consumed = 0;
                loop {
                    let length = buffer.len();
                    match decoder.decode_frame(&mut *buffer) {
                        Ok(DecodedFrame::Complete(_)) => {
                            consumed += length - buffer.len();
                            if let Some(end) = consumed.checked_sub(before) {
                                ends.push(end);
                            }
                        }
                        // Incomplete, or not an event stream after all: no more boundaries.
                        Ok(DecodedFrame::Incomplete) | Err(_) => break,
                    }
                }
            }
        }
        let mut pieces = Vec::with_capacity(ends.len() + 1);
        let mut start = 0;
        for end in ends {
            if end > start {
                pieces.push((chunk.slice(start..end), true));
                start = end;
            }
        }
        if start < chunk.len() {
            pieces.push((chunk.slice(start..), false));
        }
        pieces
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Passing,
    /// The error event goes out next, then the end.
    ErrorNext,
    /// The connection is cut at the next poll.
    CutNext,
    /// Waiting forever (until the client gives up).
    Hanging,
    Done,
}

struct FaultedBody {
    inner: BoxBody,
    fault: BodyFault,
    framer: Framer,
    error_event: Bytes,
    /// Split from the last chunk, not sent yet.
    pieces: VecDeque<(Bytes, bool)>,
    events: u32,
    bytes: u64,
    /// When the first byte went out, for the bandwidth limit.
    started: Option<Instant>,
    wait: Option<Pin<Box<Sleep>>>,
    state: State,
    /// Whether what goes before a cut (the head, and the bytes sent) had its chance to go out.
    flushed: bool,
}

fn cut() -> Box<dyn std::error::Error> {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection cut by an injected fault",
    ))
}

impl FaultedBody {
    fn new(inner: BoxBody, fault: BodyFault, framer: Framer, error_event: Bytes) -> Self {
        FaultedBody {
            inner,
            fault,
            framer,
            error_event,
            pieces: VecDeque::new(),
            events: 0,
            bytes: 0,
            started: None,
            wait: None,
            state: State::Passing,
            flushed: false,
        }
    }

    /// What happens before the next piece goes: a fault that is due now.
    fn before_piece(&mut self) {
        let events = self.events;
        match self.fault {
            BodyFault::Stream(StreamFault::Disconnect { after_events })
                if events >= after_events =>
            {
                self.state = State::CutNext;
            }
            BodyFault::Stream(StreamFault::ErrorEvent { after_events })
                if events >= after_events =>
            {
                self.state = State::ErrorNext;
            }
            BodyFault::Connection(ConnectionFault::CloseAfterHead) => self.state = State::CutNext,
            _ => {}
        }
    }

    /// Cuts `piece` to what may go out of it, and notes the fault that follows it.
    fn limit(&mut self, mut piece: Bytes, ends_event: bool) -> Bytes {
        let byte_limit = match self.fault {
            BodyFault::Stream(StreamFault::DisconnectAfterBytes { after_bytes })
            | BodyFault::Connection(ConnectionFault::Truncate { after_bytes }) => Some(after_bytes),
            _ => None,
        };
        if let Some(limit) = byte_limit {
            let room = limit.saturating_sub(self.bytes);
            if (piece.len() as u64) >= room {
                piece.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                self.state = State::CutNext;
            }
        }
        if let BodyFault::Connection(ConnectionFault::Bandwidth { bytes_per_second }) = self.fault {
            let slice = ((bytes_per_second as f64 * BANDWIDTH_SLICE) as usize).max(1);
            if piece.len() > slice {
                let rest = piece.split_off(slice);
                self.pieces.push_front((rest, ends_event));
                self.bytes += piece.len() as u64;
                return piece;
            }
        }
        self.bytes += piece.len() as u64;
        if ends_event {
            self.events += 1;
            match self.fault {
                BodyFault::Stream(StreamFault::Stall {
                    after_events,
                    wait,
                    hang,
                }) if self.events == after_events => {
                    if hang {
                        self.state = State::Hanging;
                    } else {
                        self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                    }
                }
                BodyFault::Stream(StreamFault::Drip { every }) => {
                    self.wait = Some(Box::pin(tokio::time::sleep(every)));
                }
                _ => {}
            }
        }
        piece
    }

    /// For the bandwidth limit: how long to wait before sending more, given what was sent.
    fn bandwidth_wait(&mut self) -> Option<Duration> {
        let BodyFault::Connection(ConnectionFault::Bandwidth { bytes_per_second }) = self.fault
        else {
            return None;
        };
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = Duration::from_secs_f64(self.bytes as f64 / bytes_per_second as f64);
        due.checked_sub(started.elapsed())
            .filter(|wait| !wait.is_zero())
    }
}

impl MessageBody for FaultedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        match (self.fault, self.inner.size()) {
            // A declared length the body then falls short of is how a client sees the cut.
            (
                BodyFault::Stream(StreamFault::ErrorEvent { .. })
                | BodyFault::Connection(ConnectionFault::CloseAfterHead),
                _,
            ) => BodySize::Stream,
            (_, BodySize::None) => BodySize::Stream,
            (_, size) => size,
        }
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.as_mut().get_mut();
        loop {
            if let Some(wait) = this.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.wait = None;
            }
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Hanging => return Poll::Pending,
                State::CutNext => {
                    // What went out before the cut is flushed first: failing in the same poll
                    // would drop it with the connection. That includes the head when no byte
                    // of the body went out (a cut after 0 events, close_after_head).
                    if !this.flushed {
                        this.flushed = true;
                        this.wait = Some(Box::pin(tokio::time::sleep(FLUSH_BEFORE_CUT)));
                        continue;
                    }
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(cut())));
                }
                State::ErrorNext => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(this.error_event.clone())));
                }
                State::Passing => {}
            }
            if let Some(wait) = this.bandwidth_wait() {
                this.wait = Some(Box::pin(tokio::time::sleep(wait)));
                continue;
            }
            if let Some((piece, ends_event)) = this.pieces.pop_front() {
                this.before_piece();
                if this.state != State::Passing {
                    this.pieces.push_front((piece, ends_event));
                    continue;
                }
                let piece = this.limit(piece, ends_event);
                if piece.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(piece)));
            }
            this.before_piece();
            if this.state != State::Passing {
                continue;
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let pieces = this.framer.split(chunk);
                    this.pieces.extend(pieces);
                }
                Poll::Ready(Some(Err(error))) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
