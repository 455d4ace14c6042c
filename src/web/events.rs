//! Server-sent events that keep open Proxies pages live: a card is re-rendered and pushed
//! whenever its proxy starts, stops, fails or is edited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

use super::AppState;
use super::cards::{ProxyCard, ProxyCardFragment};
use super::guard::presented;
use super::pages::{PageValues, render_for};
use super::proxy_host::ProxyHost;
use crate::auth::{Access, Caller};
use crate::registry::{RegistryEvent, Totals};

/// How often cards whose traffic changed are pushed again (and, when none did, a keep-alive).
const TRAFFIC_TICK: Duration = Duration::from_secs(5);

/// How often a live stream asks whether its session or token still works.
const RECHECK_EVERY: Duration = Duration::from_secs(3);

/// Resolves once the request's session or token stops working (signed out, idle-expired,
/// revoked, the account disabled or deleted), checked every `RECHECK_EVERY` by a task of its
/// own, so that a busy stream cannot keep cancelling the check. A live stream ends then: its
/// browser reconnects through the guard, which sends it to sign in. A check that fails
/// (the database) ends the stream too; the reconnect checks again. The task ends with the
/// stream (the receiver dropped).
pub(super) fn signed_out(req: &HttpRequest, state: &AppState) -> oneshot::Receiver<()> {
    let (mut sender, receiver) = oneshot::channel();
    let presented = presented(req);
    let accounts = Arc::clone(&state.accounts);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.reset();
        loop {
            tokio::select! {
                () = sender.closed() => return,
                _ = tick.tick() => {}
            }
            let valid = match &presented {
                Some(presented) => match accounts.still_valid(presented).await {
                    Ok(valid) => valid,
                    Err(e) => {
                        log::warn!("cannot check a live stream's credential: {e}");
                        false
                    }
                },
                None => false,
            };
            if !valid {
                let _ = sender.send(());
                return;
            }
        }
    });
    receiver
}

/// One SSE message; multi-line HTML becomes several `data:` lines, as the format requires, and
/// empty HTML one empty `data:` line, without which browsers drop the event.
pub(super) fn sse_message(event: &str, html: &str) -> Bytes {
    let mut message = format!("event: {event}\n");
    for line in html.lines() {
        message.push_str("data: ");
        message.push_str(line);
        message.push('\n');
    }
    if html.is_empty() {
        message.push_str("data: \n");
    }
    message.push('\n');
    Bytes::from(message)
}

#[derive(Template)]
#[template(path = "proxies/_totals.html")]
pub struct TotalsFragment {
    pub totals: Totals,
}

/// Who a stream is for: cards carry their forms' CSRF token and show only what the viewer may
/// see.
struct Viewer {
    host: ProxyHost,
    access: Access,
    values: PageValues,
}

impl Viewer {
    fn render(&self, template: &impl Template) -> Result<String, askama::Error> {
        render_for(Some(&self.values), template)
    }
}

fn render_event(state: &AppState, viewer: &Viewer, event: RegistryEvent) -> Bytes {
    let registry = &state.registry;
    let mut out = Vec::new();
    match event {
        RegistryEvent::Changed(id) => match registry.get_for(id, viewer.access) {
            Ok(snapshot) => {
                let card = ProxyCard::new(&snapshot, &viewer.host);
                match viewer.render(&ProxyCardFragment { card }) {
                    Ok(html) => out.push(sse_message(&format!("proxy-{id}"), &html)),
                    Err(e) => log::error!("cannot render card of proxy {id}: {e}"),
                }
            }
            Err(_) if registry.get(id).is_ok() => return Bytes::from_static(b": keep-alive\n\n"),
            Err(_) => out.push(sse_message(&format!("proxy-{id}"), "")),
        },
        RegistryEvent::Added(_) | RegistryEvent::Removed(_) => {
            out.push(sse_message("grid-changed", ""));
        }
    }
    if let Ok(html) = viewer.render(&TotalsFragment {
        totals: registry.totals(viewer.access),
    }) {
        out.push(sse_message("totals", &html));
    }
    Bytes::from(out.concat())
}

/// A card's numbers that, when they move, have it sent again: requests, and today's spend
/// (known only once an answer has ended).
type Moved = (u64, u64);

/// Cards of proxies whose request count or spend moved since the last tick; `seen` remembers
/// them.
fn traffic_updates(state: &AppState, viewer: &Viewer, seen: &mut HashMap<i32, Moved>) -> Bytes {
    let mut out = Vec::new();
    for snapshot in state.registry.list_for(viewer.access) {
        let id = snapshot.spec.id.0;
        let now = (
            snapshot.traffic.requests,
            snapshot.spent_today_usd.to_bits(),
        );
        if seen.insert(id, now).is_some_and(|before| before != now) {
            let card = ProxyCard::new(&snapshot, &viewer.host);
            if let Ok(html) = viewer.render(&ProxyCardFragment { card }) {
                out.push(sse_message(&format!("proxy-{id}"), &html));
            }
        }
    }
    if out.is_empty() {
        Bytes::from_static(b": keep-alive\n\n")
    } else {
        Bytes::from(out.concat())
    }
}

pub async fn proxy_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> HttpResponse {
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let viewer = Viewer {
        host,
        access: caller.access(),
        values: PageValues::of(&caller),
    };
    let receiver = state.registry.subscribe();
    let shutting_down = state.shutting_down.clone();
    let signed_out = signed_out(&req, &state);
    let mut seen = HashMap::new();
    traffic_updates(&state, &viewer, &mut seen);
    let mut tick = tokio::time::interval(TRAFFIC_TICK);
    tick.reset();
    let stream = futures_util::stream::unfold(
        (
            state,
            viewer,
            receiver,
            shutting_down,
            signed_out,
            seen,
            tick,
        ),
        |(state, viewer, mut receiver, mut shutting_down, mut signed_out, mut seen, mut tick)| async move {
            if *shutting_down.borrow() {
                return None;
            }
            let chunk = tokio::select! {
                _ = shutting_down.changed() => return None,
                _ = &mut signed_out => return None,
                _ = tick.tick() => traffic_updates(&state, &viewer, &mut seen),
                received = receiver.recv() => match received {
                    Ok(event) => render_event(&state, &viewer, event),
                    // Missed events: have the page reload its grid instead.
                    Err(RecvError::Lagged(_)) => sse_message("grid-changed", ""),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((
                Ok::<_, actix_web::Error>(chunk),
                (
                    state,
                    viewer,
                    receiver,
                    shutting_down,
                    signed_out,
                    seen,
                    tick,
                ),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}
