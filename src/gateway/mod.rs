//! The request pipeline each proxy port runs. Every proxy is its own actix server; this module
//! builds its app from the live configuration the registry shares with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use arc_swap::ArcSwap;

use crate::providers::ProxyErrorKind;
use crate::registry::spec::ProxySpec;

/// What a running proxy server reads on every request. The registry swaps `spec` whole when the
/// user saves, so the request path never reads the database and never sees half an edit.
pub struct LiveProxy {
    pub spec: ArcSwap<ProxySpec>,
    in_flight: AtomicUsize,
}

impl LiveProxy {
    pub fn new(spec: ProxySpec) -> Self {
        LiveProxy {
            spec: ArcSwap::from_pointee(spec),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight for as long as it is alive, however it ends.
struct InFlight(Arc<LiveProxy>);

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

pub fn configure(cfg: &mut web::ServiceConfig, live: Arc<LiveProxy>) {
    cfg.app_data(web::Data::from(live))
        .default_service(web::to(handle));
}

async fn handle(req: HttpRequest, live: web::Data<LiveProxy>) -> HttpResponse {
    let live = live.into_inner();
    let _in_flight = InFlight::enter(&live);
    let spec = live.spec.load();
    let provider = spec.provider.provider();
    provider.error_response(
        ProxyErrorKind::NotImplemented,
        &format!(
            "Rubberduck proxy “{}” does not forward {} {} to {} yet.",
            spec.name,
            req.method(),
            req.path(),
            provider.display_name()
        ),
    )
}
