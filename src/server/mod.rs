//! The webhook's HTTP building blocks: routes, the connection-managing listener (also used for
//! the admin servers), TLS, the body budget and file reloading. `crate::serve` wires them.

pub mod budget;
pub mod connections;
pub mod reload;
pub mod routes;
pub mod tls;

pub use routes::{AppState, Limits, NamespaceLabels, PolicyExceptions};
