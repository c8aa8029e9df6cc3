//! Cluster IPs and node ports of Services, handed out as kube-apiserver's service
//! registry does: a Service without `spec.clusterIP` gets a free address of the
//! service CIDR (never its network or broadcast address, and never one of the
//! [`RESERVED_LOW`] addresses, which only an explicit request gets: `.10` is cluster
//! DNS); a NodePort or LoadBalancer Service gets a free node port for every port
//! without one. Explicit requests must be in range and free (422 otherwise, with
//! Kubernetes' messages). Headless (`clusterIP: None`) and ExternalName Services get
//! no address.
//!
//! Design. The [`Store`] has conditional single-key writes but no multi-key
//! transactions, so allocation records cannot be written atomically with the
//! Service. The stored Services are therefore the only record: the in-use maps
//! (bitmaps, [`ServiceAllocator::load`]) are rebuilt from one list of them at start,
//! and from then on change only under one mutex, in two steps around each write:
//! [`ServiceAllocator::reserve`] marks what the new version takes before the write,
//! and the [`Reservation`] is settled after it — committed (what the old version
//! held and the new one does not is freed) or reverted (what was taken is freed).
//! Every store write of a Service is conditional on the version it was computed
//! from, so what a reservation frees is exactly what the store stopped holding.
//! Invariant: everything a stored Service holds is marked; marks beyond that are
//! writes in flight. A create therefore costs a bitmap scan, not a list.
//!
//! Limitations: a write whose outcome is unknown (a backend failure, a request
//! dropped mid-write) keeps its marks — a leak, never a duplicate — until the next
//! start rebuilds the maps. The maps live in one process: several API servers on one
//! store would need allocation records in the store or kube-apiserver's repair loop.
//! Services stored before allocation existed get an address on their next update.

mod bitmap;
mod plan;
mod range;

use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use strata_api::Resource;
use strata_store::{ListOptions, Store, StoreError};

use crate::status::ApiError;
use crate::storage;
use plan::{AllocError, Change, Claims, Pools};

pub use range::{
    DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, NodePortRange, RESERVED_LOW, RangeError,
    ServiceCidr,
};

/// Services read per page when the maps are rebuilt.
const LOAD_PAGE: usize = 500;

/// Why the in-use maps could not be rebuilt from the store.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// Listing the stored Services failed.
    #[error("cannot list the stored Services")]
    List(#[source] StoreError),
    /// A stored Service is not a Service: what it holds is unknown, so nothing is
    /// handed out rather than something twice.
    #[error("stored Service {key} cannot be read")]
    Decode {
        /// Its key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The cluster IPs and node ports in use, shared by every write of a Service.
#[derive(Debug)]
pub struct ServiceAllocator {
    pools: Mutex<Pools>,
}

impl ServiceAllocator {
    /// An allocator with nothing in use (a store without Services).
    pub fn new(cidr: ServiceCidr, node_ports: NodePortRange) -> Self {
        ServiceAllocator {
            pools: Mutex::new(Pools::new(cidr, node_ports)),
        }
    }

    /// An allocator that knows what the Services in `store` hold. Two stored Services
    /// holding the same address (data written before allocation existed) are logged;
    /// addresses outside the ranges (after a range change) are ignored.
    pub async fn load(
        store: &dyn Store,
        cidr: ServiceCidr,
        node_ports: NodePortRange,
    ) -> Result<Self, ServicesError> {
        let mut pools = Pools::new(cidr, node_ports);
        let Some(services) = strata_api::resources::find("", "v1", "services") else {
            // The resource table always serves Services; without them nothing is held.
            return Ok(ServiceAllocator::new(cidr, node_ports));
        };
        let prefix = storage::prefix(services, None);
        let mut options = ListOptions {
            limit: Some(LOAD_PAGE),
            ..ListOptions::default()
        };
        loop {
            let page = store
                .list(&prefix, options.clone())
                .await
                .map_err(ServicesError::List)?;
            for kv in &page.items {
                let service: Service =
                    serde_json::from_slice(&kv.value).map_err(|source| ServicesError::Decode {
                        key: kv.key.clone(),
                        source,
                    })?;
                let taken = pools.mark(&plan::claims(&service));
                if !taken.is_empty() {
                    tracing::warn!(key = %kv.key, ip = ?taken.ip, node_ports = ?taken.node_ports,
                        "a stored Service holds what another one holds too");
                }
            }
            match page.items.last() {
                Some(last) if page.more() => {
                    options.revision = Some(page.revision);
                    options.continue_after = Some(last.key.clone());
                }
                _ => break,
            }
        }
        let (ips, ports) = pools.used();
        tracing::info!(service_cidr = %cidr, node_port_range = %node_ports, ips, ports,
            "service allocations loaded");
        Ok(ServiceAllocator {
            pools: Mutex::new(pools),
        })
    }

    /// The service CIDR cluster IPs come from.
    pub fn service_cidr(&self) -> ServiceCidr {
        self.lock().cidr()
    }

    /// The range node ports come from.
    pub fn node_port_range(&self) -> NodePortRange {
        self.lock().ports()
    }

    /// How many cluster IPs and node ports are in use (or reserved by writes in flight).
    pub fn in_use(&self) -> (u32, u32) {
        self.lock().used()
    }

    fn lock(&self) -> MutexGuard<'_, Pools> {
        // The maps are consistent between calls: a panic cannot leave half an update.
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills in the cluster IP and node ports of `new` (an admitted object of
    /// `resource`, replacing `old` when given) and marks them taken. Objects of
    /// other resources pass untouched. With `dry_run` the object is filled in the
    /// same way but nothing stays marked.
    pub(crate) fn reserve(
        &self,
        resource: &Resource,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> Result<Reservation<'_>, ApiError> {
        if !is_services(resource) {
            return Ok(Reservation::none(self));
        }
        let old: Option<Service> = old.map(decode).transpose()?;
        let mut service: Service = decode(new)?;
        let change = {
            let mut pools = self.lock();
            let change = plan::allocate(&mut pools, old.as_ref(), &mut service);
            if dry_run && let Ok(change) = &change {
                pools.release(&change.reserved);
            }
            change
        };
        let change = change.map_err(|err| match err {
            AllocError::Invalid(causes) => ApiError::Invalid {
                kind: "Service".into(),
                group: String::new(),
                name: new["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                causes,
            },
            AllocError::Full(message) => ApiError::Internal(message.into()),
        })?;
        let spec = serde_json::to_value(&service.spec)
            .map_err(|e| ApiError::Internal(format!("cannot encode a Service: {e}")))?;
        new["spec"] = spec;
        Ok(if dry_run {
            Reservation::none(self)
        } else {
            Reservation {
                allocator: self,
                change,
            }
        })
    }

    /// Frees what `stored`, an object of `resource` the store no longer holds, held.
    pub(crate) fn release(&self, resource: &Resource, stored: &Value) {
        if !is_services(resource) {
            return;
        }
        match decode(stored) {
            Ok(service) => self.lock().release(&plan::claims(&service)),
            Err(err) => tracing::warn!(error = %err, "a deleted Service's addresses stay marked"),
        }
    }
}

fn is_services(resource: &Resource) -> bool {
    resource.group.is_empty() && resource.plural == "services"
}

fn decode(object: &Value) -> Result<Service, ApiError> {
    serde_json::from_value(object.clone())
        .map_err(|e| ApiError::Internal(format!("an admitted Service does not decode: {e}")))
}

/// What one write of a Service took and will give back, until it is settled.
///
/// Dropping a reservation unsettled keeps everything marked: the safe answer when
/// the write's outcome is unknown.
#[must_use = "settle the reservation once the write's outcome is known"]
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    allocator: &'a ServiceAllocator,
    change: Change,
}

impl<'a> Reservation<'a> {
    /// A reservation of nothing.
    pub(crate) fn none(allocator: &'a ServiceAllocator) -> Self {
        Reservation {
            allocator,
            change: Change::default(),
        }
    }

    /// The write is stored: free what the previous version held and the new one
    /// does not.
    pub(crate) fn commit(self) {
        self.free(&self.change.released);
    }

    /// The write did not happen: free what it took.
    pub(crate) fn revert(self) {
        self.free(&self.change.reserved);
    }

    /// Commits or reverts by the store's answer to the write. A refusal (conflict,
    /// missing or existing key) means nothing was written; another failure leaves the
    /// outcome unknown, so the marks stay.
    pub(crate) fn settle<T>(self, written: &Result<T, StoreError>) {
        match written {
            Ok(_) => self.commit(),
            Err(
                StoreError::Conflict { .. }
                | StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. },
            ) => self.revert(),
            Err(err) => {
                if !self.change.reserved.is_empty() {
                    tracing::warn!(error = %err, "a Service write failed; its addresses stay marked until restart");
                }
            }
        }
    }

    fn free(&self, claims: &Claims) {
        if !claims.is_empty() {
            self.allocator.lock().release(claims);
        }
    }
}

#[cfg(test)]
mod tests;
