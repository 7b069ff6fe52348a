//! The invariants every AdmissionReview answer must keep, checked by the fuzz targets and by the
//! proptest properties (tests/properties.rs includes this file, so both assert the same thing).
//!
//! Depends only on what the hookguard crate itself depends on (serde_json, base64, json-patch).

use base64::Engine as _;
use serde_json::Value;

use hookguard::admission::{Webhook, review};
use hookguard::policy::Policy;

/// The most hookguard may answer to one review (DESIGN.md, "Bounded work per request").
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What the HTTP layer answered, as src/server/routes.rs maps `review`'s result.
#[derive(Debug)]
pub enum Answer {
    /// HTTP 200 with this AdmissionReview (parsed).
    Ok(Value),
    /// HTTP 400 with this message.
    BadRequest(String),
}

impl Answer {
    /// The HTTP status routes.rs answers with.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Ok(_) => 200,
            Answer::BadRequest(_) => 400,
        }
    }
}

/// Calls `review` once and checks what holds for any body: no panic (the caller sees it), an
/// answer the HTTP layer turns into 200 or 400, a bounded response, a well-formed AdmissionReview
/// that echoes the uid, `/mutate` never denies, `/validate` never patches, DELETE is never denied
/// nor mutated.
pub fn answer(webhook: Webhook, policy: &Policy, body: &[u8]) -> Answer {
    match review(webhook, policy, body, None) {
        Err(e) => {
            // What routes.rs writes into the 400 body and the log line.
            let message = e.bounded_message();
            assert!(!message.is_empty(), "an AdmissionError without a message");
            let limit = hookguard::admission::MAX_ERROR_MESSAGE_BYTES + 64;
            assert!(
                message.len() <= limit,
                "400 message of {} bytes (limit {limit}): {}...",
                message.len(),
                truncated(&message)
            );
            Answer::BadRequest(message)
        }
        Ok((bytes, outcome)) => {
            assert!(
                bytes.len() <= MAX_RESPONSE_BYTES,
                "{} response of {} bytes (limit {MAX_RESPONSE_BYTES}): {}...",
                webhook.as_str(),
                bytes.len(),
                truncated(&String::from_utf8_lossy(&bytes))
            );
            let out: Value =
                serde_json::from_slice(&bytes).expect("the response is JSON (an AdmissionReview)");
            assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(out["kind"], "AdmissionReview");
            let response = &out["response"];
            assert_eq!(response["uid"].as_str(), Some(outcome.uid.as_str()));
            let allowed = response["allowed"]
                .as_bool()
                .expect("response.allowed is a bool");
            assert!(
                matches!(outcome.result, "allowed" | "patched" | "denied"),
                "{}",
                outcome.result
            );
            assert_eq!(allowed, outcome.result != "denied");
            assert_eq!(
                response.get("patch").is_some(),
                outcome.result == "patched",
                "a patch exactly when the result is `patched`: {out}"
            );
            if !allowed {
                assert_eq!(response["status"]["code"], 403, "{out}");
            }
            match webhook {
                Webhook::Mutate => assert!(allowed, "/mutate never denies: {out}"),
                Webhook::Validate => {
                    assert!(response.get("patch").is_none(), "/validate never patches")
                }
            }
            if let Some(patch) = response.get("patch") {
                assert_eq!(response["patchType"], "JSONPatch");
                let text = patch.as_str().expect("patch is a base64 string");
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .expect("patch is standard base64");
                let _: json_patch::Patch =
                    serde_json::from_slice(&raw).expect("patch is a JSONPatch");
            }
            if outcome.operation == hookguard::policy::Operation::Delete {
                assert!(
                    allowed && response.get("patch").is_none(),
                    "DELETE is never denied nor mutated: {out}"
                );
            }
            Answer::Ok(out)
        }
    }
}

/// The JSONPatch of a `/mutate` answer, decoded (`None` when it has none).
pub fn patch_of(out: &Value) -> Option<json_patch::Patch> {
    let text = out["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("patch is standard base64");
    Some(serde_json::from_slice(&raw).expect("patch is a JSONPatch"))
}

/// What one full round through the API server's sequence found.
#[derive(Debug, Default)]
pub struct Round {
    /// HTTP status of `/mutate` and `/validate` on the request as sent.
    pub statuses: [u16; 2],
    /// Whether `/mutate` returned a patch.
    pub patched: bool,
    /// Whether `/validate` (on the mutated object) denied.
    pub denied: bool,
}

/// Runs the API server's sequence on one body and checks every invariant:
/// [`answer`] for `/mutate` and `/validate`; when `/mutate` patches, the patch applies to
/// `request.object` with json-patch, `/mutate` on the patched object asks for no further patch
/// (idempotence, safe under reinvocation) and `/validate` on it still answers 200.
pub fn round(policy: &Policy, body: &[u8]) -> Round {
    let mutate = answer(Webhook::Mutate, policy, body);
    let validate = answer(Webhook::Validate, policy, body);
    let mut found = Round {
        statuses: [mutate.status(), validate.status()],
        ..Round::default()
    };
    // Both webhooks parse the same request the same way.
    assert_eq!(
        found.statuses[0], found.statuses[1],
        "/mutate and /validate disagree on whether the body is an AdmissionReview: {mutate:?} {validate:?}"
    );
    if let Answer::Ok(out) = &validate {
        found.denied = out["response"]["allowed"] == false;
    }
    let Answer::Ok(out) = mutate else {
        return found;
    };
    let Some(patch) = patch_of(&out) else {
        return found;
    };
    found.patched = true;
    // The body parsed as an AdmissionReview; as a generic tree it may not (serde_json skips an
    // ignored string's lone surrogate escapes but rejects them in a Value). The API server never
    // sends such a body (Go's encoder replaces lone surrogates), so there is nothing to apply to.
    let Ok(mut envelope) = serde_json::from_slice::<Value>(body) else {
        return found;
    };
    let object = &mut envelope["request"]["object"];
    json_patch::patch(object, &patch).unwrap_or_else(|e| {
        panic!("the patch does not apply to request.object: {e}\npatch: {patch:?}")
    });
    let again = serde_json::to_vec(&envelope).expect("serialize the patched review");
    match answer(Webhook::Mutate, policy, &again) {
        Answer::Ok(second) => assert!(
            second["response"].get("patch").is_none(),
            "not idempotent: /mutate patches its own output again\nfirst patch: {patch:?}\nsecond answer: {second}"
        ),
        Answer::BadRequest(e) => panic!("/mutate rejects its own output: {e}"),
    }
    if let Answer::BadRequest(e) = answer(Webhook::Validate, policy, &again) {
        panic!("/validate rejects the mutated object: {e}");
    }
    found
}

fn truncated(s: &str) -> &str {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
