//! Arbitrary bytes as the body of `/mutate` and `/validate` under the default policy.
//! Invariants: see `hookguard_fuzz::invariants::round` (no panic, 200 or 400, response <= 64 KiB,
//! the patch applies to request.object, /mutate on the patched object asks for no further patch).
#![no_main]

use std::sync::LazyLock;

use hookguard::policy::Policy;
use hookguard_fuzz::invariants::round;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

fuzz_target!(|body: &[u8]| {
    round(&POLICY, body);
});
