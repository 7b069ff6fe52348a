//! Scenarios driven with real Helm 3 and Helm 4.

use crate::Scenario;

pub const ALL: &[Scenario] = &[];
