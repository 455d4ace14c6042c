//! IP rules of the failure config: exact addresses, CIDR blocks and wildcard octets.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq)]
pub enum IpRule {
    Exact(IpAddr),
    Network(IpNet),
    /// `192.168.*.*`: each octet a number or `*`.
    Wildcard([Option<u8>; 4]),
}

impl IpRule {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(IpRule::Exact(ip));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Some(IpRule::Network(net));
        }
        let octets: Vec<&str> = text.split('.').collect();
        if octets.len() != 4 || !text.contains('*') {
            return None;
        }
        let mut pattern = [None; 4];
        for (slot, octet) in pattern.iter_mut().zip(octets) {
            *slot = match octet {
                "*" => None,
                number => Some(number.parse::<u8>().ok()?),
            };
        }
        Some(IpRule::Wildcard(pattern))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            IpRule::Exact(exact) => canonical(*exact) == ip,
            IpRule::Network(net) => net.contains(&ip),
            IpRule::Wildcard(pattern) => match ip {
                IpAddr::V4(v4) => pattern
                    .iter()
                    .zip(v4.octets())
                    .all(|(want, got)| want.is_none_or(|w| w == got)),
                IpAddr::V6(_) => false,
            },
        }
    }
}

/// IPv4 clients reached over an IPv6 socket appear as `::ffff:a.b.c.d`; rules say `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn every_form_matches_what_it_should() {
        let exact = IpRule::parse("10.1.2.3").expect("exact");
        assert!(exact.matches(ip("10.1.2.3")) && !exact.matches(ip("10.1.2.4")));
        assert!(exact.matches(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        let cidr = IpRule::parse("192.168.0.0/16").expect("cidr");
        assert!(cidr.matches(ip("192.168.40.1")) && !cidr.matches(ip("192.169.0.1")));
        let v6 = IpRule::parse("fd00::/8").expect("v6 cidr");
        assert!(v6.matches(ip("fd12::1")) && !v6.matches(ip("fe80::1")));
        let wildcard = IpRule::parse("127.*.*.*").expect("wildcard");
        assert!(wildcard.matches(ip("127.0.0.1")) && !wildcard.matches(ip("128.0.0.1")));
    }

    #[test]
    fn nonsense_is_rejected() {
        for bad in [
            "999.1.1.1",
            "10.0.0.0/33",
            "abc",
            "1.2.*",
            "1.2.3.*.5",
            "1.2.300.*",
            "",
        ] {
            assert_eq!(IpRule::parse(bad), None, "{bad}");
        }
    }
}
