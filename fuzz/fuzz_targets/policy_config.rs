//! Arbitrary bytes (as UTF-8 text) to `Config::from_yaml`, the policy file parser.
//! Invariants: no panic; an error has a message; an accepted file validates again from its own
//! config (`Policy::new`) and survives a round trip through JSON (which is YAML) unchanged; the
//! engine under the accepted policy keeps every review invariant on the fixtures.
#![no_main]

use hookguard::policy::{Config, Policy};
use hookguard_fuzz::invariants::round;
use libfuzzer_sys::fuzz_target;

const REVIEWS: &[&str] = &[
    include_str!("../../tests/fixtures/job-migrate-create.json"),
    include_str!("../../tests/fixtures/pod-test-create.json"),
    include_str!("../../tests/fixtures/job-migrate-update.json"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Config::from_yaml(text) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
        Ok(policy) => policy,
    };
    let config = policy.config().clone();
    Policy::new(config.clone()).expect("an accepted config validates again");
    let json = serde_json::to_string(&config).expect("a config serializes");
    let again = Config::from_yaml(&json)
        .unwrap_or_else(|e| panic!("accepted config does not parse back from {json}: {e}"));
    assert_eq!(again.config(), &config, "round trip through {json}");
    for body in REVIEWS {
        round(&policy, body.as_bytes());
    }
});
