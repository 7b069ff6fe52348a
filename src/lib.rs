//! hookguard: a Kubernetes admission webhook and policy enforcer for Helm hook resources.
//!
//! The [`policy`] engine is pure and shared by the webhook ([`serve`], built from [`server`]'s
//! pieces), `lint` and `audit`. [`controller`] runs the inventory, orphan detection and the
//! janitor in a process of its own, with the cluster-wide read permissions the webhook never gets.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod controller;
pub mod hook;
pub mod inventory;
pub mod lint;
pub mod managed_certs;
pub mod metrics;
pub mod object;
pub mod policy;
pub mod process_metrics;
pub mod serve;
pub mod server;
pub mod x509;
