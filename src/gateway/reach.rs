//! Keeping members' proxies to the upstreams they may reach: addresses written in the URL are
//! checked before sending, names on the addresses they resolve to, when the connection is made
//! (so a name that resolves to a public address at save time and to loopback later is caught).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;

use super::error::GatewayError;
use crate::reach::{self, MemberUpstreams};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Resolves upstream names for a member's proxy, keeping only the addresses members may reach.
pub struct MembersResolver(pub Arc<MemberUpstreams>);

impl Resolve for MembersResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await?.collect();
            let allowed = self.0.current();
            if allowed.lists_host(bare) {
                return Ok(addresses);
            }
            let admitted: Vec<SocketAddr> = addresses
                .iter()
                .copied()
                .filter(|address| allowed.admits(address.ip()))
                .collect();
            match (admitted.is_empty(), addresses.first()) {
                (true, Some(refused)) => Err(Box::new(Refused(reach::refused_message(&format!(
                    "{bare} ({})",
                    refused.ip()
                )))) as Box<dyn std::error::Error>),
                _ => Ok(admitted),
            }
        })
    }
}

/// Refuses a URL whose host is an address a member's proxy may not reach.
pub fn check_url(url: &str, members: Option<&MemberUpstreams>) -> Result<(), GatewayError> {
    let Some(members) = members else {
        return Ok(());
    };
    match reach::refusal(url, &members.current()) {
        Some(reason) => Err(GatewayError::Unreachable {
            upstream: reach::host_of(url).unwrap_or_default(),
            reason,
        }),
        None => Ok(()),
    }
}
