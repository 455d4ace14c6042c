//! Building, starting and stopping the actix server of one proxy, and noticing when one dies.

use std::sync::Arc;

use super::ProxySnapshot;
use super::{ManagedProxy, ProxyRegistry, ProxyStatus, RegistryError, RegistryEvent, lock, ports};
use crate::auth::Role;
use crate::db;
use crate::gateway::{self, ProxyServerState};
use crate::ids::{ProxyId, UserId};
use crate::providers::ProviderState;

impl ProxyRegistry {
    /// Whether `owner`'s account is neither disabled nor deleted.
    pub(super) async fn owner_active(&self, owner: UserId) -> Result<bool, RegistryError> {
        let user = db::run(&self.db, move |conn| db::accounts::user(conn, owner.0)).await?;
        Ok(user.is_some_and(|user| user.disabled_at.is_none() && user.deleted_at.is_none()))
    }

    /// Whether `owner` is an admin, whose proxies may reach any upstream; read at each start.
    async fn owned_by_admin(&self, owner: UserId) -> Result<bool, RegistryError> {
        let user = db::run(&self.db, move |conn| db::accounts::user(conn, owner.0)).await?;
        Ok(user.is_some_and(|user| user.role == Role::Admin.as_str()))
    }

    pub(super) async fn start_locked(
        &self,
        id: ProxyId,
        proxy: &Arc<ManagedProxy>,
    ) -> Result<ProxySnapshot, RegistryError> {
        if lock(&proxy.runtime).status == ProxyStatus::Running {
            return Ok(self.snapshot(proxy));
        }
        self.set_status(id, proxy, ProxyStatus::Starting, None);
        let spec = proxy.live.spec.load_full();
        if let Err(message) = self.load_fixtures_before_start(proxy, &spec).await {
            log::warn!("proxy {id} cannot start: {message}");
            self.set_status(id, proxy, ProxyStatus::Error, Some(message));
            return Ok(self.snapshot(proxy));
        }
        let port = spec.port;
        let members = match self.owned_by_admin(spec.owner).await? {
            true => None,
            false => Some(self.system.member_upstreams()),
        };
        let outcome = ports::bind(self.proxy_host(), port).and_then(|listener| {
            let server_state = Arc::new(ProxyServerState {
                live: Arc::clone(&proxy.live),
                trusted_proxies: self.system.trusted_proxies(),
                members,
                cache: Arc::clone(&self.cache),
                telemetry: Arc::clone(&self.telemetry),
                provider_state: ProviderState::load(spec.provider),
                upstream: self.settings.upstream.clone(),
            });
            gateway::serve(
                listener,
                server_state,
                &gateway::ServerOptions {
                    workers: self.settings.workers_per_proxy,
                    graceful_stop_timeout: self.settings.graceful_stop_timeout,
                    max_connections: self.settings.upstream.max_connections,
                },
            )
            .map_err(|e| format!("cannot serve on port {port}: {e}"))
        });
        let last_error = match outcome {
            Ok(server) => {
                let generation = {
                    let mut runtime = lock(&proxy.runtime);
                    runtime.generation += 1;
                    runtime.server = Some(server.handle());
                    runtime.listening_port = Some(port);
                    runtime.generation
                };
                let registry = self.me.clone();
                actix_web::rt::spawn(async move {
                    let outcome = server.await;
                    if let Some(registry) = registry.upgrade() {
                        registry.on_server_exit(id, generation, outcome);
                    }
                });
                self.set_status(id, proxy, ProxyStatus::Running, None);
                log::info!("proxy {id} listening on {}:{port}", self.proxy_host());
                None
            }
            Err(message) => {
                log::warn!("proxy {id} cannot start: {message}");
                self.set_status(id, proxy, ProxyStatus::Error, Some(message.clone()));
                Some(message)
            }
        };
        let last_error_for_db = last_error.clone();
        db::run(&self.db, move |conn| {
            db::proxies::set_runtime_state(conn, id.0, "running", last_error_for_db.as_deref())
        })
        .await?;
        lock(&proxy.runtime).desired_running = true;
        Ok(self.snapshot(proxy))
    }

    pub(super) async fn stop_server(&self, id: ProxyId, proxy: &Arc<ManagedProxy>, graceful: bool) {
        let server = lock(&proxy.runtime).server.take();
        if let Some(server) = server {
            // Hung requests end now instead of holding the stop for its whole timeout.
            proxy.live.stopping.notify_waiters();
            server.stop(graceful).await;
            log::info!(
                "proxy {id} stopped{}",
                if graceful { "" } else { " (forced)" }
            );
        }
        let mut runtime = lock(&proxy.runtime);
        runtime.listening_port = None;
        if runtime.status != ProxyStatus::Stopped {
            runtime.status = ProxyStatus::Stopped;
            runtime.last_error = None;
            drop(runtime);
            self.emit(RegistryEvent::Changed(id));
        }
    }

    /// A server the registry did not stop has died: show it as an error rather than "running".
    fn on_server_exit(&self, id: ProxyId, generation: u64, outcome: std::io::Result<()>) {
        let Ok(proxy) = self.entry(id) else { return };
        let mut runtime = lock(&proxy.runtime);
        if runtime.generation != generation || runtime.server.is_none() {
            return;
        }
        let message = match outcome {
            Ok(()) => "the proxy server stopped unexpectedly".to_owned(),
            Err(e) => format!("the proxy server failed: {e}"),
        };
        log::error!("proxy {id}: {message}");
        runtime.server = None;
        runtime.listening_port = None;
        runtime.status = ProxyStatus::Error;
        runtime.last_error = Some(message);
        drop(runtime);
        self.emit(RegistryEvent::Changed(id));
    }
}
