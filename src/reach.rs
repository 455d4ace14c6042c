//! Which upstream addresses members' proxies may reach. Without a limit a member could point a
//! proxy at the server's own loopback, at a cloud metadata service (169.254.169.254) or at the
//! intranet, and read them through it. Members reach public addresses, plus the hosts and
//! networks an admin lists; admins' proxies reach anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An admin's exceptions to "public addresses only": host names (matched exactly, any case) and
/// networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedUpstreams {
    pub hosts: Vec<String>,
    pub networks: Vec<IpNet>,
}

impl AllowedUpstreams {
    /// Whether a name is listed, so that whatever it resolves to may be reached.
    pub fn lists_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(host))
    }

    /// Whether members may connect to `ip`.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        is_public(ip) || self.networks.iter().any(|net| net.contains(&ip))
    }
}

/// The exceptions as the proxy servers read them at connect time, swapped when an admin saves.
#[derive(Default)]
pub struct MemberUpstreams(ArcSwap<AllowedUpstreams>);

impl MemberUpstreams {
    pub fn new(allowed: AllowedUpstreams) -> Self {
        MemberUpstreams(ArcSwap::from_pointee(allowed))
    }

    pub fn current(&self) -> Arc<AllowedUpstreams> {
        self.0.load_full()
    }

    pub fn replace(&self, allowed: AllowedUpstreams) {
        self.0.store(Arc::new(allowed));
    }
}

/// The host of an absolute URL, without the brackets of an IPv6 address.
pub fn host_of(url: &str) -> Option<String> {
    let uri = url.parse::<actix_web::http::Uri>().ok()?;
    let host = uri.host()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

/// Why members may not use `url` as it is written, when its host is an address that `allowed`
/// does not admit. Names are checked on the addresses they resolve to, when a proxy connects.
pub fn refusal(url: &str, allowed: &AllowedUpstreams) -> Option<String> {
    let host = host_of(url)?;
    let ip = host.parse::<IpAddr>().ok()?;
    (!allowed.admits(ip)).then(|| refused_message(&host))
}

/// The one explanation members get, at save time and at connect time.
pub fn refused_message(address: &str) -> String {
    format!(
        "Members' proxies may only reach public addresses, and {address} is not one. An admin can allow it under Settings → Upstreams members may use."
    )
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address of the public internet: not loopback, private, link-local,
/// shared (carrier NAT), unspecified, multicast, broadcast, documentation or reserved space.
pub fn is_public(ip: IpAddr) -> bool {
    match unmapped(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // 0.0.0.0/8, 100.64.0.0/10 (shared), 192.0.0.0/24 (protocol assignments),
        // 198.18.0.0/15 (benchmarking), 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn only_public_addresses_are_public() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip(inside)), "{inside}");
        }
        for outside in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn listed_networks_and_hosts_are_admitted() {
        let allowed = AllowedUpstreams {
            hosts: vec!["llm.corp.example".into()],
            networks: vec!["10.20.0.0/16".parse().expect("a network")],
        };
        assert!(allowed.admits(ip("10.20.3.4")));
        assert!(!allowed.admits(ip("10.21.3.4")));
        assert!(allowed.lists_host("LLM.corp.example."));
        assert!(!allowed.lists_host("corp.example"));
    }
}
