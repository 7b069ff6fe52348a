//! hookguard: a Kubernetes admission webhook and policy enforcer for Helm hook resources.
//!
//! The [`policy`] engine is the `hookguard-engine` crate (no I/O, no clock, no async: its
//! dependency list says so), re-exported here as [`hook`], [`object`], [`policy`], [`admission`]
//! and [`lint`]. It is shared by the webhook ([`serve`], built from [`server`]'s pieces), `lint`
//! and `audit`. [`controller`] runs the inventory, orphan detection and the janitor in a process
//! of its own, with the cluster-wide read permissions the webhook never gets.

pub mod admin;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod controller;
pub mod helm_release;
pub mod history;
pub mod impact;
pub mod inventory;
pub mod managed_certs;
pub mod metrics;
pub mod process_metrics;
pub mod serve;
pub mod server;
pub mod table;
pub mod x509;

pub use hookguard_engine::{admission, hook, lint, object, policy, postrender, yaml};
