//! Binding proxy ports, and choosing a free one.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

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
