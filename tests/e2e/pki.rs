//! The control plane's PKI: its CA, kube-apiserver's serving certificate, the admin client
//! certificate, the service-account signing key, and the client certificate kube-apiserver
//! presents to a webhook that requires mutual TLS.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::proc::Result;

/// PEM files of a small PKI.
pub struct Pki {
    pub dir: PathBuf,
}

/// Writes a file; the error names it.
pub fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

impl Pki {
    pub fn create(dir: PathBuf) -> Result<Pki> {
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
        write(&dir.join("ca.crt"), &ca_cert.pem())?;
        write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().map_err(e)?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])
        .map_err(e)?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving
            .subject_alt_names
            .push(SanType::IpAddress([10, 96, 0, 1].into()));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = serving.signed_by(&key, &issuer).map_err(e)?;
        write(&dir.join("apiserver.crt"), &cert.pem())?;
        write(&dir.join("apiserver.key"), &key.serialize_pem())?;

        let key = KeyPair::generate().map_err(e)?;
        let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = admin.signed_by(&key, &issuer).map_err(e)?;
        write(&dir.join("admin.crt"), &cert.pem())?;
        write(&dir.join("admin.key"), &key.serialize_pem())?;

        // Service-account token signing key (ES256).
        let sa = KeyPair::generate().map_err(e)?;
        write(&dir.join("sa.key"), &sa.serialize_pem())?;
        write(&dir.join("sa.pub"), &sa.public_key_pem())?;

        // A CA of its own for the client certificate kube-apiserver presents to a webhook that
        // requires mutual TLS: the cluster CA above also signs the admin certificate, which such
        // a webhook must refuse.
        let client_ca_key = KeyPair::generate().map_err(e)?;
        let mut client_ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        client_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        client_ca
            .distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-webhook-client-ca");
        client_ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        write(
            &dir.join("webhook-client-ca.crt"),
            &client_ca.self_signed(&client_ca_key).map_err(e)?.pem(),
        )?;
        let client_issuer = Issuer::new(client_ca, client_ca_key);
        let key = KeyPair::generate().map_err(e)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver-webhook-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = client.signed_by(&key, &client_issuer).map_err(e)?;
        write(&dir.join("webhook-client.crt"), &cert.pem())?;
        write(&dir.join("webhook-client.key"), &key.serialize_pem())?;
        Ok(Pki { dir })
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}
