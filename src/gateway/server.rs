//! A proxy port's server: HTTP/1.1 and HTTP/2 cleartext on the same port.
//!
//! actix-web's own HTTP/2 dispatcher cannot tell a handler that its client reset the stream, so a
//! hung request would outlive its caller. Each connection is therefore routed by its first bytes:
//! the HTTP/2 preface goes to [`super::http2`], anything else to actix-http's HTTP/1 dispatcher.
//! Both call the same app service, one per worker.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service, map_config};
use actix_web::App;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use super::connection::remember_client_socket;
use super::{ProxyServerState, configure, http2};

/// How long a new connection may stay silent before its protocol is known; as long as actix
/// gives an HTTP/1.1 client for its first request.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ServerOptions {
    pub workers: usize,
    pub graceful_stop_timeout: Duration,
    /// Connections served at once, all workers together; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Starts serving `listener` with the proxy's pipeline.
pub fn serve(
    listener: TcpListener,
    state: Arc<ProxyServerState>,
    options: &ServerOptions,
) -> std::io::Result<Server> {
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let local_addr = listener.local_addr()?;
    Ok(builder
        .listen("rubberduck-proxy", listener, move || {
            worker_service(Arc::clone(&state), shutdown.clone(), local_addr)
        })?
        .workers(options.workers)
        .max_concurrent_connections(
            options
                .max_connections
                .div_ceil(options.workers.max(1))
                .max(1),
        )
        .disable_signals()
        .shutdown_timeout(options.graceful_stop_timeout.as_secs())
        .run())
}

/// One worker's connection service: its app, its HTTP/1 dispatcher, and the protocol choice.
fn worker_service(
    state: Arc<ProxyServerState>,
    shutdown: GracefulShutdownSignal,
    local_addr: SocketAddr,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()> {
    fn_factory(move || {
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        async move {
            let app = App::new().configure(|cfg| configure(cfg, state));
            let app = Rc::new(
                map_config(app, |()| AppConfig::default())
                    .new_service(())
                    .await
                    .map_err(|()| log::error!("a proxy worker could not build its app"))?,
            );
            let h1_shutdown = shutdown.clone();
            let shared_app = Rc::clone(&app);
            let h1 = HttpService::<TcpStream, _, _, _, _>::build()
                .client_request_timeout(FIRST_BYTES_TIMEOUT)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local_addr)
                .on_connect_ext(|io: &TcpStream, extensions| remember_client_socket(io, extensions))
                .graceful_shutdown_signal(move || {
                    let signal = h1_shutdown.clone();
                    async move { signal.notified().await }
                })
                .h1(fn_factory(move || {
                    let app = Rc::clone(&shared_app);
                    async move { Ok::<_, ()>(app) }
                }))
                .new_service(())
                .await?;
            let h1 = Rc::new(h1);
            Ok(fn_service(move |io: TcpStream| {
                let app = Rc::clone(&app);
                let h1 = Rc::clone(&h1);
                let shutdown = shutdown.clone();
                async move {
                    // Streamed answers go out as many small writes; with Nagle's algorithm each
                    // one after the first waits for the client's (delayed, up to 40 ms) ACK.
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, http2::starts_with_preface(&io))
                        .await
                    {
                        Ok(Ok(true)) => http2::serve(io, app, peer, shutdown).await,
                        Ok(Ok(false)) => {
                            if let Err(error) = h1.call((io, peer)).await {
                                log::debug!("HTTP/1 connection from {peer:?} ended: {error}");
                            }
                        }
                        Ok(Err(error)) => log::debug!("connection from {peer:?} failed: {error}"),
                        Err(_) => log::debug!("connection from {peer:?} sent nothing; closed"),
                    }
                    Ok(())
                }
            }))
        }
    })
}
