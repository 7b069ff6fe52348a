//! hookguard's policy engine: Helm hook annotations parsed like Helm ([`hook`]), a borrowing
//! view of the object fields the rules read ([`object`]), the rules and their configuration
//! ([`policy`]), the AdmissionReview wire types ([`admission`]) `lint` over rendered
//! manifests ([`lint`]), the Helm post-renderer ([`postrender`]) and YAML read as Kubernetes reads
//! it and edited in place ([`yaml`]).
//!
//! Pure by construction: no I/O, no clock, no async. Its dependency list is the proof (parsing
//! and data crates only); the webhook, `lint`, `audit` and the controller in the `hookguard`
//! crate call it.

pub mod admission;
pub mod hook;
pub mod lint;
pub mod object;
pub mod policy;
pub mod postrender;
pub mod yaml;
