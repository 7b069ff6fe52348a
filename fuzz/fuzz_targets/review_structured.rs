//! Structure-aware: AdmissionReviews shaped like the API server's (hook annotations, weights,
//! delete policies, defaulted Pod/Job/CronJob specs with containers, volumes and security
//! contexts, CREATE/UPDATE/DELETE/CONNECT with object and oldObject, deletionTimestamp,
//! finalizers), under the default or a generated policy.
//! Invariants: `invariants::round` on every review, plus `model::check_untouched` (non-hooks,
//! DELETE, CONNECT, subresources and exempt namespaces pass untouched) and
//! `model::check_ratcheting` (objects being deleted are neither mutated nor denied; a no-op UPDATE
//! is never denied).
#![no_main]

use arbitrary::Unstructured;
use hookguard_fuzz::{generate, invariants, model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(policy), Ok(review)) = (generate::policy(&mut u), generate::review(&mut u)) else {
        return;
    };
    let round = invariants::round(&policy, &review.to_body());
    model::check_untouched(&review, &policy, &round);
    model::check_ratcheting(&review, &round);
});
