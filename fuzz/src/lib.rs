//! Shared code of hookguard's fuzz targets: the invariants every answer keeps, the model of the
//! AdmissionReviews the API server sends, and the generator that builds it from fuzzer bytes.
//! `invariants` and `model` are also compiled into tests/properties.rs (proptest).

pub mod generate;
pub mod invariants;
pub mod model;
