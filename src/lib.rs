//! hookguard: a Kubernetes admission webhook and policy enforcer for Helm hook resources.
//!
//! The [`policy`] engine is pure and shared by the webhook ([`server`]), `lint` and later commands.

pub mod admission;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod hook;
pub mod inventory;
pub mod lint;
pub mod managed_certs;
pub mod metrics;
pub mod object;
pub mod policy;
pub mod process_metrics;
pub mod server;
