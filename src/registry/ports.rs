//! Port policy: which ports a proxy may take (not another proxy's, not the dashboard's, free in
//! the OS for auto-assignment), and binding them.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use super::input::{PortInput, ProxyInput, validate};
use super::{ProxyRegistry, RegistryError};
use crate::auth::Access;
use crate::ids::ProxyId;
use crate::validation::FieldError;

/// Binds the listener a proxy server will serve on. Binding first means a proxy is only ever
/// reported "running" once its port really accepts connections.
pub fn bind(host: IpAddr, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(SocketAddr::new(host, port)).map_err(|e| bind_error_message(host, port, &e))
}

pub fn is_free_in_os(host: IpAddr, port: u16) -> bool {
    TcpListener::bind(SocketAddr::new(host, port)).is_ok()
}

fn bind_error_message(host: IpAddr, port: u16, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => format!("port {port} is already in use by another program"),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied to listen on port {port} of {host}")
        }
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {host}: that address does not belong to this machine")
        }
        _ => format!("cannot listen on {host}:{port}: {error}"),
    }
}

impl ProxyRegistry {
    /// A port is claimed when another proxy is configured for it or still listens on it.
    /// Another user's proxy is not named: its name is theirs.
    pub(super) fn check_port_unclaimed(
        &self,
        port: u16,
        except: Option<ProxyId>,
        access: Access,
    ) -> Result<(), RegistryError> {
        if self.settings.reserved_ports.contains(&port) {
            return Err(RegistryError::Invalid(vec![FieldError::new(
                "port",
                format!("Port {port} is the dashboard's own port."),
            )]));
        }
        let claimed_by = self.list().into_iter().find(|p| {
            Some(p.spec.id) != except && (p.spec.port == port || p.listening_port == Some(port))
        });
        let user = match claimed_by {
            None => return Ok(()),
            Some(other) if access.allows(other.spec.owner) => {
                format!("proxy “{}”", other.spec.name)
            }
            Some(_) => "another user's proxy".to_owned(),
        };
        Err(RegistryError::Invalid(vec![FieldError::new(
            "port",
            format!(
                "Port {port} is already used by {user}. Leave the port empty to auto-assign a free one."
            ),
        )]))
    }

    /// Feedback on a port as the user types it: `Err` when it cannot be used, `Ok(Some(_))` when
    /// it can be saved but is busy in the OS right now.
    pub fn check_port(
        &self,
        text: &str,
        proxy: Option<ProxyId>,
        access: Access,
    ) -> Result<Option<String>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let input = ProxyInput {
            port: Some(PortInput::Text(text.to_owned())),
            ..ProxyInput::default()
        };
        let port = match validate(&input, &self.settings.port_range) {
            Err(errors) => match errors.into_iter().find(|e| e.field == "port") {
                Some(error) => return Err(error.message),
                None => text.parse::<u16>().map_err(|e| e.to_string())?,
            },
            Ok(valid) => valid.port.unwrap_or_default(),
        };
        let own_port = proxy
            .and_then(|id| self.get_for(id, access).ok())
            .and_then(|p| p.listening_port);
        if own_port == Some(port) {
            return Ok(None);
        }
        self.check_port_unclaimed(port, proxy, access)
            .map_err(|e| e.to_string())?;
        if is_free_in_os(self.proxy_host(), port) {
            Ok(None)
        } else {
            Ok(Some(format!(
                "Port {port} is in use by another program right now; the proxy cannot start until it is free."
            )))
        }
    }

    pub(super) fn free_port(&self) -> Result<u16, RegistryError> {
        let claimed: Vec<u16> = self
            .list()
            .iter()
            .flat_map(|p| [Some(p.spec.port), p.listening_port])
            .flatten()
            .collect();
        self.settings
            .port_range
            .clone()
            .find(|port| {
                !claimed.contains(port)
                    && !self.settings.reserved_ports.contains(port)
                    && is_free_in_os(self.proxy_host(), *port)
            })
            .ok_or_else(|| {
                RegistryError::Invalid(vec![FieldError::new(
                    "port",
                    format!(
                        "No free port left between {} and {}.",
                        self.settings.port_range.start(),
                        self.settings.port_range.end()
                    ),
                )])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_taken_port_is_reported_in_plain_words() {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let taken = TcpListener::bind((host, 0)).expect("an ephemeral port");
        let port = taken.local_addr().expect("bound address").port();
        assert!(!is_free_in_os(host, port));
        assert_eq!(
            bind(host, port).err().as_deref(),
            Some(format!("port {port} is already in use by another program").as_str())
        );
    }
}
