//! Noticing that a client went away. actix does not cancel a handler whose client disconnects,
//! so requests that wait on purpose (hangs, stalls) watch the socket themselves, or, over
//! HTTP/2, their stream.

use std::any::Any;
use std::cell::Cell;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::{HttpMessage, HttpRequest};
use tokio::sync::Notify;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A second handle on a connection's socket, only ever peeked at.
pub struct ClientSocket(std::net::TcpStream);

/// `on_connect` hook of proxy servers: keeps a duplicate of each connection's socket.
pub fn remember_client_socket(connection: &dyn Any, extensions: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Ok(fd) = stream.as_fd().try_clone_to_owned()
    {
        extensions.insert(ClientSocket(std::net::TcpStream::from(fd)));
    }
}

impl ClientSocket {
    /// Makes the connection end with a reset (RST) and without sending what is still
    /// unsent, when it closes.
    pub fn reset_on_close(&self) {
        if let Err(e) = socket2::SockRef::from(&self.0).set_linger(Some(Duration::ZERO)) {
            log::debug!("cannot arrange a connection reset: {e}");
        }
    }

    /// Whether the peer has closed its end. The duplicate shares the original's non-blocking
    /// mode, so peeking never waits.
    fn closed(&self) -> bool {
        match self.0.peek(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    }
}

/// Carried by each HTTP/2 request; fired when the client resets its stream or the connection
/// ends. Peeking the socket would not tell: the connection's other streams keep it busy.
#[derive(Clone, Default)]
pub struct StreamReset(Rc<ResetState>);

#[derive(Default)]
pub struct ResetState {
    fired: Cell<bool>,
    notify: Notify,
}

impl StreamReset {
    pub fn fire(&self) {
        self.0.fired.set(true);
        self.0.notify.notify_waiters();
    }

    async fn wait(&self) {
        let notified = self.0.notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.0.fired.get() {
            return;
        }
        notified.await;
    }
}

/// Resolves once the client of `req` has disconnected (never, if its socket is unknown).
pub async fn client_gone(req: &HttpRequest) {
    let reset = req.extensions().get::<StreamReset>().cloned();
    if let Some(reset) = reset {
        return reset.wait().await;
    }
    let socket = req.conn_data::<ClientSocket>();
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        if socket.is_some_and(ClientSocket::closed) {
            return;
        }
    }
}
