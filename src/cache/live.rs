//! Single flight: the one request fetching an answer that identical requests wait for, and the
//! answer as it arrives. A stream is shared chunk by chunk while it comes in, so a follower sees
//! its first token when the leader does; a whole (non-stream) answer is waited for and then
//! found in the cache.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use super::{CacheKey, MAX_ENTRY_BYTES, lock};
use crate::ids::ProxyId;

pub(super) type MemoryKey = (ProxyId, CacheKey);

/// The answers being fetched right now, by key; a leader removes its own when it is done.
pub(super) type Leaders = Mutex<HashMap<MemoryKey, Flight>>;

/// What identical requests find while an answer is being fetched.
#[derive(Clone)]
pub(super) struct Flight {
    /// Changes whenever the answer does, and closes when the leader is done.
    changes: watch::Receiver<()>,
    answer: Arc<LiveAnswer>,
}

impl Flight {
    /// Waits until the answer is a stream others may follow (then follows it), or until the
    /// leader is done (then `None`: the answer is stored, or was given up).
    pub(super) async fn follow_or_wait(mut self) -> Option<Follower> {
        loop {
            self.changes.borrow_and_update();
            if let Some(next) = self.answer.admit() {
                return Some(Follower {
                    answer: self.answer,
                    changes: self.changes,
                    next,
                });
            }
            if self.changes.changed().await.is_err() {
                return self.answer.admit().map(|next| Follower {
                    answer: self.answer,
                    changes: self.changes,
                    next,
                });
            }
        }
    }
}

/// Held by the one request fetching an answer that identical requests wait for. A stream it
/// publishes is followed live; dropping it (stored, or given up) wakes those still waiting to
/// look again, and ends the followers' stream: completely once [`Leader::complete`] was
/// called, else cut, as the leader's was.
pub struct Leader {
    leaders: Arc<Leaders>,
    key: MemoryKey,
    answer: Arc<LiveAnswer>,
    signal: watch::Sender<()>,
}

impl Leader {
    /// Registers a new flight for `key`.
    pub(super) fn start(
        leaders: &Arc<Leaders>,
        map: &mut HashMap<MemoryKey, Flight>,
        key: MemoryKey,
    ) -> Leader {
        let (signal, changes) = watch::channel(());
        let answer = Arc::new(LiveAnswer::default());
        map.insert(
            key,
            Flight {
                changes,
                answer: Arc::clone(&answer),
            },
        );
        Leader {
            leaders: Arc::clone(leaders),
            key,
            answer,
            signal,
        }
    }

    /// The head of a successful stream: from now on identical requests follow it.
    pub fn begin_stream(&self, status: u16, headers: Vec<(String, String)>) {
        lock(&self.answer.state).head = Some(LiveHead { status, headers });
        self.signal.send_replace(());
    }

    /// One more chunk of the stream, for its followers. Past the size the cache keeps, no new
    /// follower is let in; the ones following get the rest. False when nobody follows and
    /// nobody may any more: the leader need not be kept for them.
    pub fn publish(&self, chunk: &Bytes) -> bool {
        let keep = {
            let mut state = lock(&self.answer.state);
            if state.head.is_none() {
                return true;
            }
            state.size += chunk.len();
            if state.size > MAX_ENTRY_BYTES {
                state.admitting = false;
            }
            if state.admitting || state.followers > 0 {
                state.chunks.push(chunk.clone());
                true
            } else {
                false
            }
        };
        self.signal.send_replace(());
        keep
    }

    /// Whether a request follows the stream.
    pub fn is_followed(&self) -> bool {
        lock(&self.answer.state).followers > 0
    }

    /// The answer arrived whole: its followers' streams end normally.
    pub fn complete(self) {
        lock(&self.answer.state).end = Some(End::Complete);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        lock(&self.leaders).remove(&self.key);
        let mut state = lock(&self.answer.state);
        state.admitting = false;
        state.end.get_or_insert(End::Cut);
        drop(state);
        self.signal.send_replace(());
    }
}

/// A stream answer as the leader receives it.
#[derive(Default)]
struct LiveAnswer {
    state: Mutex<LiveState>,
}

struct LiveState {
    head: Option<LiveHead>,
    chunks: Vec<Bytes>,
    size: usize,
    end: Option<End>,
    admitting: bool,
    followers: usize,
}

impl Default for LiveState {
    fn default() -> Self {
        LiveState {
            head: None,
            chunks: Vec::new(),
            size: 0,
            end: None,
            admitting: true,
            followers: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Cut,
}

struct LiveHead {
    status: u16,
    headers: Vec<(String, String)>,
}

impl LiveAnswer {
    /// Lets one more follower in, when the stream has begun and is still admitting: it starts
    /// at the first chunk.
    fn admit(&self) -> Option<usize> {
        let mut state = lock(&self.state);
        (state.head.is_some() && state.admitting).then(|| {
            state.followers += 1;
            0
        })
    }
}

/// A request following another's stream: it gets every chunk the leader got, from the first,
/// as they arrive.
pub struct Follower {
    answer: Arc<LiveAnswer>,
    changes: watch::Receiver<()>,
    next: usize,
}

impl Follower {
    /// The stream's head: its status and content headers.
    pub fn reply(&self) -> actix_web::HttpResponseBuilder {
        let state = lock(&self.answer.state);
        let (status, headers) = state
            .head
            .as_ref()
            .map_or((200, &[][..]), |head| (head.status, &head.headers[..]));
        let mut builder =
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
        for (name, value) in headers {
            builder.append_header((name.as_str(), value.as_str()));
        }
        builder
    }

    /// The stream's chunks as they arrive; an error when the leader's stream was cut.
    pub fn into_body(self) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
        futures_util::stream::unfold(self, |mut follower| async move {
            loop {
                follower.changes.borrow_and_update();
                match follower.next_chunk() {
                    Next::Chunk(chunk) => return Some((Ok(chunk), follower)),
                    Next::End => return None,
                    Next::Cut => {
                        let cut = io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the upstream stream this request shared was cut",
                        );
                        follower.next = usize::MAX;
                        return Some((Err(cut), follower));
                    }
                    Next::Wait => {}
                }
                if follower.changes.changed().await.is_err() && follower.next_chunk_is_wait() {
                    // The leader is gone without an end: as if cut.
                    lock(&follower.answer.state).end.get_or_insert(End::Cut);
                }
            }
        })
    }

    fn next_chunk(&mut self) -> Next {
        let state = lock(&self.answer.state);
        if self.next == usize::MAX {
            return Next::End;
        }
        if let Some(chunk) = state.chunks.get(self.next) {
            self.next += 1;
            return Next::Chunk(chunk.clone());
        }
        match state.end {
            Some(End::Complete) => Next::End,
            Some(End::Cut) => Next::Cut,
            None => Next::Wait,
        }
    }

    fn next_chunk_is_wait(&self) -> bool {
        let state = lock(&self.answer.state);
        self.next != usize::MAX && self.next >= state.chunks.len() && state.end.is_none()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut state = lock(&self.answer.state);
        state.followers = state.followers.saturating_sub(1);
    }
}

enum Next {
    Chunk(Bytes),
    End,
    Cut,
    Wait,
}
