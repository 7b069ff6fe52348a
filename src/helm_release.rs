//! Helm's release records, as its Secret and ConfigMap storage drivers write them: the value of
//! the `release` key is base64 of gzip of the release's JSON (Helm 3 and Helm 4 alike; an
//! uncompressed JSON value is accepted too, as Helm's decoder does). Only what `audit --policy`
//! reads is decoded: the release's identity and the manifests of its hooks.

use std::io::Read as _;

use base64::Engine as _;
use serde::Deserialize;

/// Larger decompressed records are refused (Helm's own records stay far below: the API server
/// stores at most 1 MiB per Secret or ConfigMap, and manifests compress well).
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// One release revision.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HelmRelease {
    pub name: String,
    pub namespace: String,
    pub version: u64,
    #[serde(default)]
    pub info: ReleaseInfo,
    #[serde(default)]
    pub hooks: Vec<ReleaseHook>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    #[serde(default)]
    pub status: String,
}

/// A hook as Helm stored it: the manifest it rendered, which it creates again on the next
/// install, upgrade, rollback or test of the release.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ReleaseHook {
    pub name: String,
    #[serde(default)]
    pub kind: String,
    /// The template it came from, e.g. `shop/templates/migrate-job.yaml`.
    #[serde(default)]
    pub path: String,
    /// One YAML document.
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseDecodeError {
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not gzip: {0}")]
    Gzip(std::io::Error),
    #[error("larger than {MAX_DECODED_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("not a Helm release: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes the value of a record's `release` key (the bytes of a Secret's data, which the API
/// server has already base64-decoded once, or a ConfigMap's string).
pub fn decode(value: &[u8]) -> Result<HelmRelease, ReleaseDecodeError> {
    let text: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let packed = base64::engine::general_purpose::STANDARD.decode(text)?;
    let json = if packed.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .take(MAX_DECODED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(ReleaseDecodeError::Gzip)?;
        if out.len() as u64 > MAX_DECODED_BYTES {
            return Err(ReleaseDecodeError::TooLarge);
        }
        out
    } else {
        packed
    };
    Ok(serde_json::from_slice(&json)?)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn encode(json: &str, gzip: bool) -> Vec<u8> {
        let bytes = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(json.as_bytes()).unwrap();
            enc.finish().unwrap()
        } else {
            json.as_bytes().to_vec()
        };
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    const RELEASE: &str = r#"{"name":"shop","namespace":"apps","version":3,"info":{"status":"deployed"},"hooks":[{"name":"shop-migrate","kind":"Job","path":"shop/templates/migrate.yaml","manifest":"apiVersion: batch/v1\nkind: Job\n","events":["pre-install","pre-upgrade"],"weight":-5}],"manifest":"---\n"}"#;

    #[test]
    fn gzip_and_plain_records_decode_alike() {
        for gzip in [true, false] {
            let r = decode(&encode(RELEASE, gzip)).unwrap();
            assert_eq!(
                (r.name.as_str(), r.namespace.as_str(), r.version),
                ("shop", "apps", 3)
            );
            assert_eq!(r.info.status, "deployed");
            assert_eq!(r.hooks.len(), 1);
            assert_eq!(r.hooks[0].events, ["pre-install", "pre-upgrade"]);
            assert!(r.hooks[0].manifest.starts_with("apiVersion: batch/v1"));
        }
    }

    /// A Secret as the API server returns it (its data base64 once more), captured from Helm 3
    /// and Helm 4 by scripts/capture-fixtures.sh.
    fn captured(helm: &str) -> HelmRelease {
        let path = format!(
            "{}/tests/fixtures/helm-release/secret-hooks-{helm}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let secret: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let value = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["release"].as_str().unwrap())
            .unwrap();
        decode(&value).unwrap()
    }

    #[test]
    fn records_written_by_helm_3_and_helm_4_decode_with_their_hooks() {
        for helm in ["helm3", "helm4"] {
            let r = captured(helm);
            assert_eq!(r.name, format!("hooks-{helm}"));
            assert_eq!((r.namespace.as_str(), r.version), ("shop", 1));
            // The install's hook never completed (no node ran it).
            assert_eq!(r.info.status, "failed");
            assert_eq!(r.hooks.len(), 1, "{helm}");
            let hook = &r.hooks[0];
            assert_eq!(hook.name, format!("hooks-{helm}-pre-install"));
            assert_eq!(
                (hook.kind.as_str(), hook.events.as_slice()),
                ("Job", &["pre-install".to_owned()][..])
            );
            assert!(hook.manifest.contains("helm.sh/hook"), "{}", hook.manifest);
            // What audit --policy does with it: the default policy judges the stored manifest.
            let impacts = crate::impact::judge_release(
                &crate::policy::Policy::default(),
                &r,
                |_| None,
                Default::default(),
            );
            assert_eq!(impacts.len(), 1);
            assert!(impacts[0].error.is_none(), "{:?}", impacts[0]);
        }
    }

    #[test]
    fn broken_records_say_what_is_wrong() {
        assert!(matches!(decode(b"%%%"), Err(ReleaseDecodeError::Base64(_))));
        let bad_gzip = base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 1, 2, 3]);
        assert!(matches!(
            decode(bad_gzip.as_bytes()),
            Err(ReleaseDecodeError::Gzip(_))
        ));
        assert!(matches!(
            decode(&encode("{\"kind\": 1}", true)),
            Err(ReleaseDecodeError::Json(_))
        ));
    }
}
