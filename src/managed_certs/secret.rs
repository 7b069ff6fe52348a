//! The certificate Secret's wire format: which key holds what, and the parsed [`Material`].

use std::collections::BTreeMap;

use crate::certs::{Ca, Serving};
use crate::x509::{facts, split_pem};

/// Keys of the Secret.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// Every CA the webhook configurations must trust (current first), PEM.
pub const CA_BUNDLE: &str = "ca-bundle.crt";
/// A staged CA, waiting to be published before it signs anything.
pub const NEXT_CA_CERT: &str = "ca-next.crt";
pub const NEXT_CA_KEY: &str = "ca-next.key";

/// What the Secret holds, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca: Ca,
    pub serving: Serving,
    /// PEM of each trusted CA, current first, then a staged one, then older ones.
    pub bundle: Vec<String>,
    pub next_ca: Option<Ca>,
}

impl Material {
    /// Reads the Secret's data; `Err` says what is wrong with it.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Material, String> {
        let text = |key: &str| -> Result<String, String> {
            let bytes = data.get(key).ok_or_else(|| format!("key {key} missing"))?;
            String::from_utf8(bytes.clone()).map_err(|_| format!("key {key} is not PEM text"))
        };
        let ca = Ca {
            cert_pem: text(CA_CERT)?,
            key_pem: text(CA_KEY)?,
        };
        let serving = Serving {
            cert_pem: text(TLS_CERT)?,
            key_pem: text(TLS_KEY)?,
        };
        for (key, pem) in [(CA_CERT, &ca.cert_pem), (TLS_CERT, &serving.cert_pem)] {
            if facts(pem).is_none() {
                return Err(format!("key {key} holds no readable certificate"));
            }
        }
        let next_ca = match (
            data.contains_key(NEXT_CA_CERT),
            data.contains_key(NEXT_CA_KEY),
        ) {
            (true, true) => Some(Ca {
                cert_pem: text(NEXT_CA_CERT)?,
                key_pem: text(NEXT_CA_KEY)?,
            }),
            _ => None,
        };
        let bundle = match data.get(CA_BUNDLE) {
            Some(_) => split_pem(&text(CA_BUNDLE)?),
            None => Vec::new(),
        };
        Ok(Material {
            ca,
            serving,
            bundle,
            next_ca,
        })
    }

    /// The Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        data.insert(CA_CERT.to_owned(), self.ca.cert_pem.clone().into_bytes());
        data.insert(CA_KEY.to_owned(), self.ca.key_pem.clone().into_bytes());
        data.insert(
            TLS_CERT.to_owned(),
            self.serving.cert_pem.clone().into_bytes(),
        );
        data.insert(
            TLS_KEY.to_owned(),
            self.serving.key_pem.clone().into_bytes(),
        );
        data.insert(CA_BUNDLE.to_owned(), self.bundle_pem().into_bytes());
        if let Some(next) = &self.next_ca {
            data.insert(NEXT_CA_CERT.to_owned(), next.cert_pem.clone().into_bytes());
            data.insert(NEXT_CA_KEY.to_owned(), next.key_pem.clone().into_bytes());
        }
        data
    }

    /// The caBundle the webhook configurations must carry.
    pub fn bundle_pem(&self) -> String {
        self.bundle.concat()
    }

    /// Earliest notAfter among the CAs in the bundle (Unix seconds).
    pub fn earliest_ca_expiry(&self) -> Option<i64> {
        self.bundle
            .iter()
            .filter_map(|pem| facts(pem).map(|f| f.not_after))
            .min()
    }
}
