//! Where the viewer reaches the proxies: the host in proxy URLs, on cards, in snippets and in
//! the API's `url`.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::providers::Snippets;
use crate::registry::ProxySnapshot;

/// The host name proxies are reachable at, as seen by whoever made this request: proxies bound
/// to loopback are only reachable there, proxies bound beyond it are reached the way the browser
/// reached the dashboard (an intranet user sees `devbox.corp`, not `127.0.0.1`).
pub struct ProxyHost(String);

impl ProxyHost {
    pub fn for_request(req: &HttpRequest, bound: IpAddr) -> Self {
        let host = if bound.is_loopback() || !bound.is_unspecified() {
            ip_for_url(bound)
        } else {
            let info = req.connection_info();
            strip_port(info.host()).to_owned()
        };
        ProxyHost(host)
    }

    pub fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.0)
    }

    /// Where a proxy answers now: its listening port until a port change is applied.
    pub fn proxy_url(&self, snapshot: &ProxySnapshot) -> String {
        self.url(snapshot.listening_port.unwrap_or(snapshot.spec.port))
    }
}

/// The programs that call this proxy with its provider's SDKs, at the address the viewer uses.
pub fn proxy_snippets(snapshot: &ProxySnapshot, host: &ProxyHost) -> Snippets {
    snapshot
        .spec
        .provider
        .provider()
        .snippets(&host.proxy_url(snapshot))
}

fn ip_for_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host:port`, `[v6]:port` or a bare host, to the host alone.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("devbox.corp:8000"), "devbox.corp");
        assert_eq!(strip_port("devbox.corp"), "devbox.corp");
        assert_eq!(strip_port("[fe80::1]:8000"), "[fe80::1]");
        assert_eq!(strip_port("10.0.0.5:80"), "10.0.0.5");
    }
}
