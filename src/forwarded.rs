//! Who the client is behind reverse proxies: the one reading of `X-Forwarded-For`, and the list
//! of reverse proxies trusted everywhere as a value readers share and an admin's save swaps.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use arc_swap::ArcSwap;
use ipnet::IpNet;

/// The client's address: the socket peer, or, when the peer is `trusted`, the nearest untrusted
/// address in `X-Forwarded-For` (read from the right, as each proxy appends the address it saw).
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    forwarded_for
        .into_iter()
        .flat_map(|list| list.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted(*ip))
        .unwrap_or(peer)
}

/// Every `X-Forwarded-For` line of a request as one list: each proxy may add a line of its own
/// instead of appending to the last one, and the lines read in order.
pub fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

/// The reverse proxies trusted everywhere, read on every proxied request without a lock.
#[derive(Default)]
pub struct TrustedProxies(ArcSwap<Vec<IpNet>>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(ArcSwap::from_pointee(networks))
    }

    /// The current list, for one request's reads.
    pub fn current(&self) -> Arc<Vec<IpNet>> {
        self.0.load_full()
    }

    pub fn replace(&self, networks: Vec<IpNet>) {
        self.0.store(Arc::new(networks));
    }
}
