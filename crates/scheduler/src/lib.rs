//! Strata's pod scheduler, shaped like kube-scheduler: the decisions are pure functions over
//! a [`Snapshot`] of the cluster ([`filter`] and [`score`], combined by
//! [`algorithm::schedule`]), and a thin asynchronous loop ([`run`]) keeps the snapshot
//! current from watches, queues pending pods and binds them.

pub mod algorithm;
mod bind;
pub mod cache;
mod events;
pub mod filter;
pub mod labels;
pub use strata_api::quantity;
pub mod queue;
pub mod resources;
mod run;
pub mod score;
pub mod snapshot;

#[cfg(test)]
mod test_support;

pub use algorithm::{Decision, schedule};
pub use filter::{FitError, Reason};
pub use run::{SchedulerError, SchedulerOptions, run};
pub use snapshot::{NodeAttrs, PodInfo, Snapshot};
