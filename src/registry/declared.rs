//! Proxies declared in a config file (`rubberduck serve --config`): applied by name at start,
//! owned by the first admin, and started. The file wins over edits made since its last start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::input::ProxyInput;
use super::{ProxyRegistry, ProxyStatus, RegistryError, RegistryEvent};
use crate::auth::Access;
use crate::db;
use crate::faults::FailureConfig;
use crate::ids::{ProxyId, UserId};
use crate::spec::{ProxySpec, ValidProxy};
use crate::validation::FieldError;

/// One proxy as a config file declares it, already validated. Fields the file leaves out
/// have their defaults (the port excepted: left out, a proxy keeps the one it has).
#[derive(Debug, Clone)]
pub struct DeclaredProxy {
    pub proxy: ValidProxy,
    pub failures: FailureConfig,
}

/// Everything one config file declares.
#[derive(Debug, Clone)]
pub struct Declarations {
    /// The file, absolute; the proxies it declares remember it as `declared_in`.
    pub file: PathBuf,
    pub proxies: Vec<DeclaredProxy>,
}

/// What applying a file changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: Vec<ProxyId>,
    pub updated: Vec<ProxyId>,
    /// Proxies the file declared before and no longer does: kept, no longer marked as declared.
    pub released: Vec<ProxyId>,
}

/// Why a file's declarations could not be applied. `proxy` is the index in the file's list of
/// the proxy at fault, if one is.
#[derive(Debug)]
pub struct DeclaredFailure {
    pub proxy: Option<usize>,
    pub error: RegistryError,
}

impl ProxyRegistry {
    /// Creates or updates, by name, every proxy `declared` lists, owned by the first admin, with
    /// exactly the file's settings and failure config, and starts it. Proxies the same file
    /// declared before but no longer lists stay, unmarked. What would fail for a reason the
    /// file can fix (a provider that cannot change, a port another proxy holds) is found before
    /// anything changes.
    pub async fn apply_declared(
        &self,
        declared: &Declarations,
    ) -> Result<Applied, DeclaredFailure> {
        let whole = |error: RegistryError| DeclaredFailure { proxy: None, error };
        let owner = db::run(&self.db, db::accounts::first_admin)
            .await
            .map_err(|e| whole(e.into()))?
            .map(|admin| UserId(admin.id))
            .ok_or_else(|| {
                whole(RegistryError::Invalid(vec![FieldError::new(
                    "owner",
                    "There is no active admin account to own the declared proxies.",
                )]))
            })?;
        let targets: Vec<Option<ProxyId>> = declared
            .proxies
            .iter()
            .map(|entry| self.declared_target(&entry.proxy.name, owner, &declared.file))
            .collect();
        for (index, (entry, target)) in declared.proxies.iter().zip(&targets).enumerate() {
            self.check_declared(entry, *target)
                .map_err(|error| DeclaredFailure {
                    proxy: Some(index),
                    error,
                })?;
        }
        // Proxies with a port of their own first, so that no auto-assigned port takes one a
        // later entry names.
        let mut order: Vec<usize> = (0..declared.proxies.len()).collect();
        order.sort_by_key(|&index| declared.proxies[index].proxy.port.is_none());
        let mut applied = Applied::default();
        let mut declared_ids = BTreeSet::new();
        for index in order {
            let id = self
                .apply_one(&declared.proxies[index], targets[index], owner, declared)
                .await
                .map_err(|error| DeclaredFailure {
                    proxy: Some(index),
                    error,
                })?;
            match targets[index] {
                Some(_) => applied.updated.push(id),
                None => applied.created.push(id),
            }
            declared_ids.insert(id);
        }
        for (id, proxy) in self.entries() {
            let spec = proxy.live.spec.load();
            if spec.declared_in.as_deref() == Some(declared.file.as_path())
                && !declared_ids.contains(&id)
            {
                self.mark_declared(id, None).await.map_err(whole)?;
                log::info!(
                    "proxy {id} “{}” is no longer declared in {}; it stays, editable",
                    spec.name,
                    declared.file.display()
                );
                applied.released.push(id);
            }
        }
        Ok(applied)
    }

    /// The proxy a declaration of `name` applies to: the first admin's proxy of that name
    /// that the same file declared, else their oldest of that name (a renamed or moved file
    /// takes its proxies over), else none (it is created).
    fn declared_target(&self, name: &str, owner: UserId, file: &Path) -> Option<ProxyId> {
        let namesakes: Vec<Arc<ProxySpec>> = self
            .entries()
            .into_iter()
            .map(|(_, proxy)| proxy.live.spec.load_full())
            .filter(|spec| spec.owner == owner && spec.name == name)
            .collect();
        namesakes
            .iter()
            .find(|spec| spec.declared_in.as_deref() == Some(file))
            .or_else(|| namesakes.first())
            .map(|spec| spec.id)
    }

    fn check_declared(
        &self,
        entry: &DeclaredProxy,
        target: Option<ProxyId>,
    ) -> Result<(), RegistryError> {
        if let Some(id) = target {
            let current = self.entry(id)?.live.spec.load_full();
            if current.provider != entry.proxy.provider {
                return Err(RegistryError::Invalid(vec![FieldError::owned(
                    "provider".to_owned(),
                    format!(
                        "The proxy “{}” exists with the provider {}, and the provider of a proxy cannot change; rename the proxy here, or delete the old one first.",
                        current.name,
                        current.provider.id()
                    ),
                )]));
            }
        }
        match entry.proxy.port {
            Some(port) => self.check_port_unclaimed(port, target, Access::All),
            None => Ok(()),
        }
    }

    async fn apply_one(
        &self,
        entry: &DeclaredProxy,
        target: Option<ProxyId>,
        owner: UserId,
        declared: &Declarations,
    ) -> Result<ProxyId, RegistryError> {
        let input = ProxyInput::from_valid(&entry.proxy);
        let id = match target {
            Some(id) => self.update(id, input, Access::All).await?.spec.id,
            None => {
                let created = self.create(&input, false, owner, Access::All).await?;
                if let Some(warning) = created.warning {
                    log::warn!("declared proxy “{}”: {warning}", entry.proxy.name);
                }
                created.snapshot.spec.id
            }
        };
        self.set_failure_config(id, entry.failures.clone(), Access::All)
            .await?;
        self.mark_declared(id, Some(&declared.file)).await?;
        // A running proxy (not at start, where none runs yet) serves an edited port only once
        // restarted.
        let snapshot = match self.get(id)?.port_change_pending() {
            true => self.restart(id, Access::All).await?,
            false => self.start(id, Access::All).await?,
        };
        if snapshot.status == ProxyStatus::Error {
            log::warn!(
                "declared proxy “{}” cannot start: {}",
                entry.proxy.name,
                snapshot.last_error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(id)
    }

    /// Records which config file declares a proxy (`None`: none does any more).
    async fn mark_declared(&self, id: ProxyId, file: Option<&Path>) -> Result<(), RegistryError> {
        let proxy = self.entry(id)?;
        let column = file.map(|file| file.to_string_lossy().into_owned());
        db::run(&self.db, move |conn| {
            db::proxies::set_declared_in(conn, id.0, column.as_deref())
        })
        .await?;
        let current = proxy.live.spec.load_full();
        proxy.live.spec.store(Arc::new(ProxySpec {
            declared_in: file.map(Path::to_path_buf),
            ..(*current).clone()
        }));
        self.emit(RegistryEvent::Changed(id));
        Ok(())
    }
}
