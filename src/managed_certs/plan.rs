//! The pure half of self-managed certificates: from what the Secret holds, what the webhook
//! configurations publish as caBundle, and the current time, decide what the Secret must hold.
//!
//! CA rotation never breaks a connection: a new CA is first *staged* (added to the bundle next to
//! the current one, which the shell then publishes in the webhook configurations); only once every
//! webhook configuration carries it is it *promoted* and the serving certificate re-issued from it.
//! Replaced CAs stay in the bundle until they expire, so a replica still serving a certificate of
//! the old CA keeps being trusted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use super::secret::Material;
use crate::certs::{Ca, CertError, Serving, generate_ca_valid, generate_serving};
use crate::x509::{facts, same_cert, split_pem};

/// Annotation on the Secret that asks for a rotation now: `serving`, `ca` or `replace-ca`.
/// hookguard removes it once the rotation is under way (a CA rotation then completes as a
/// scheduled one does).
pub const ROTATE_ANNOTATION: &str = "hookguard.io/rotate";

/// A rotation asked for through [`ROTATE_ANNOTATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Serving,
    Ca,
    /// A new CA that replaces every CA in the bundle at once, without overlap (the old key was
    /// exposed): admissions may fail until every replica serves from the new CA.
    ReplaceCa,
}

impl Requested {
    pub fn parse(value: &str) -> Option<Requested> {
        match value.trim() {
            "serving" => Some(Requested::Serving),
            "ca" => Some(Requested::Ca),
            "replace-ca" => Some(Requested::ReplaceCa),
            _ => None,
        }
    }
}

/// Validity and renewal windows, and the names the serving certificate must carry.
#[derive(Debug, Clone)]
pub struct Settings {
    pub serving_validity: Duration,
    pub serving_renew_before: Duration,
    pub ca_validity: Duration,
    pub ca_renew_before: Duration,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "{what}: the renewal window ({renew}) must be shorter than the validity ({validity}), or the certificate would be renewed on every check"
    )]
    Window {
        what: &'static str,
        renew: String,
        validity: String,
    },
}

impl Settings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (what, validity, renew) in [
            (
                "serving certificate",
                self.serving_validity,
                self.serving_renew_before,
            ),
            ("CA", self.ca_validity, self.ca_renew_before),
        ] {
            if renew >= validity {
                return Err(SettingsError::Window {
                    what,
                    renew: renew.to_string(),
                    validity: validity.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Why the Secret is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// There was no Secret: a new CA and serving certificate.
    Created,
    /// The Secret could not be used (a key missing, bad PEM): started over with a new CA.
    Replaced(String),
    /// A new CA was added to the bundle; it signs nothing until published.
    CaStaged,
    /// The staged CA, now published everywhere, became the CA; the serving certificate was re-issued.
    CaPromoted,
    /// The serving certificate was re-issued from the current CA.
    ServingRenewed(String),
    /// Expired CAs were dropped from the bundle, or missing ones restored.
    BundleChanged,
}

impl Change {
    /// Which certificate rotated, for the rotations metric.
    pub fn rotated(&self) -> &'static [&'static str] {
        match self {
            Change::Created | Change::Replaced(_) => &["ca", "serving"],
            Change::CaPromoted => &["ca", "serving"],
            Change::ServingRenewed(_) => &["serving"],
            Change::CaStaged | Change::BundleChanged => &[],
        }
    }
}

/// The Secret's next contents and why they differ (no changes: leave the Secret alone).
#[derive(Debug, Clone)]
pub struct Plan {
    pub material: Material,
    pub changes: Vec<Change>,
    /// A requested rotation is under way: the request can be removed.
    pub request_done: bool,
}

fn new_ca(now: OffsetDateTime, settings: &Settings) -> Result<Ca, CertError> {
    // A distinct subject per CA, so "issued by the current CA" is a subject comparison.
    let name = format!("hookguard-ca-{}", now.unix_timestamp_nanos() / 1_000_000);
    generate_ca_valid(&name, now, settings.ca_validity)
}

fn issue(ca: &Ca, now: OffsetDateTime, settings: &Settings) -> Result<Serving, CertError> {
    // Never outlive the issuing CA.
    let ca_left = facts(&ca.cert_pem)
        .map(|f| Duration::seconds(f.not_after - now.unix_timestamp()))
        .unwrap_or(settings.serving_validity);
    let validity = settings.serving_validity.min(ca_left);
    generate_serving(ca, &settings.dns, &settings.ips, now, validity)
}

fn fresh(now: OffsetDateTime, settings: &Settings) -> Result<Material, CertError> {
    let ca = new_ca(now, settings)?;
    let serving = issue(&ca, now, settings)?;
    Ok(Material {
        bundle: split_pem(&ca.cert_pem),
        ca,
        serving,
        next_ca: None,
    })
}

/// A new CA and serving certificate in place of a Secret that is missing, unusable or whose CA
/// expired. The bundle keeps every certificate the webhook configurations trust now that has
/// not expired: the replicas go on serving certificates those CAs signed until each has loaded
/// the new one (after its own check has published the new bundle), so the API server must trust
/// both meanwhile. Like a rotated CA, they leave the bundle when they expire.
fn fresh_keeping_trust(
    now: OffsetDateTime,
    settings: &Settings,
    published: Option<&[String]>,
) -> Result<Material, CertError> {
    let mut material = fresh(now, settings)?;
    let ts = now.unix_timestamp();
    for pem in published.into_iter().flatten().flat_map(|b| split_pem(b)) {
        if facts(&pem).is_some_and(|f| f.not_after > ts)
            && !material.bundle.iter().any(|b| same_cert(b, &pem))
        {
            material.bundle.push(pem);
        }
    }
    Ok(material)
}

/// Whether the Secret's serving certificate can be served as it is at `now`: it parses, was
/// issued by the Secret's CA, and neither has expired. Such a Secret is served even while the
/// checks fail (e.g. the webhook configurations cannot be read), rather than not at all.
pub fn servable(material: &Material, now: OffsetDateTime) -> bool {
    let ts = now.unix_timestamp();
    match (
        facts(&material.serving.cert_pem),
        facts(&material.ca.cert_pem),
    ) {
        (Some(leaf), Some(ca)) => {
            leaf.issuer == ca.subject && leaf.not_after > ts && ca.not_after > ts
        }
        _ => false,
    }
}

/// Why the serving certificate must be re-issued, if it must.
fn serving_problem(material: &Material, now: i64, settings: &Settings) -> Option<String> {
    let Some(leaf) = facts(&material.serving.cert_pem) else {
        return Some("unreadable".to_owned());
    };
    let ca = facts(&material.ca.cert_pem)?;
    if leaf.issuer != ca.subject {
        return Some("not issued by the current CA".to_owned());
    }
    if leaf.not_after - settings.serving_renew_before.whole_seconds() <= now {
        return Some(format!(
            "expires within {}",
            humantime::format_duration(std::time::Duration::from_secs(
                settings.serving_renew_before.whole_seconds().max(0) as u64
            ))
        ));
    }
    let want_dns: BTreeSet<String> = settings.dns.iter().cloned().collect();
    let want_ips: BTreeSet<IpAddr> = settings.ips.iter().copied().collect();
    if leaf.dns != want_dns || leaf.ips != want_ips {
        return Some("its names differ from the configured --dns/--ip".to_owned());
    }
    None
}

/// Decides the Secret's next contents.
///
/// `current`: the Secret's data, if the Secret exists. `published`: the caBundles (PEM) found in
/// the webhook configurations, or `None` when there are none to keep current (then a staged CA
/// is promoted at once).
pub fn plan(
    current: Option<&BTreeMap<String, Vec<u8>>>,
    published: Option<&[String]>,
    now: OffsetDateTime,
    settings: &Settings,
) -> Result<Plan, CertError> {
    plan_requested(current, published, now, settings, None)
}

/// [`plan`], with a rotation asked for now: `Serving` re-issues the serving certificate;
/// `Ca` stages a new CA at once, which is then published and promoted like a scheduled one.
pub fn plan_requested(
    current: Option<&BTreeMap<String, Vec<u8>>>,
    published: Option<&[String]>,
    now: OffsetDateTime,
    settings: &Settings,
    requested: Option<Requested>,
) -> Result<Plan, CertError> {
    // A Secret that cannot be kept is replaced; trust in the published CAs is kept too, unless
    // the request is precisely to drop it.
    let replacement = |change: Change| -> Result<Plan, CertError> {
        let material = match requested {
            Some(Requested::ReplaceCa) => fresh(now, settings)?,
            _ => fresh_keeping_trust(now, settings, published)?,
        };
        Ok(Plan {
            material,
            changes: vec![change],
            request_done: requested.is_some(),
        })
    };
    let mut material = match current.map(Material::from_data) {
        None => return replacement(Change::Created),
        Some(Err(why)) => return replacement(Change::Replaced(why)),
        Some(Ok(_)) if requested == Some(Requested::ReplaceCa) => {
            return replacement(Change::Replaced(
                "replace-ca requested: the old CAs are no longer trusted".to_owned(),
            ));
        }
        Some(Ok(m)) => m,
    };
    let ts = now.unix_timestamp();
    // A CA that already expired (hookguard was down past its end) can sign nothing valid, and
    // nothing still trusts its certificates: start over.
    if facts(&material.ca.cert_pem).is_some_and(|ca| ca.not_after <= ts) {
        return replacement(Change::Replaced("the CA expired".to_owned()));
    }
    let mut changes = Vec::new();

    // The bundle always holds the current CA and a staged one.
    let original_bundle = material.bundle.clone();
    let mut required = split_pem(&material.ca.cert_pem);
    if let Some(next) = &material.next_ca {
        required.extend(split_pem(&next.cert_pem));
    }
    for pem in required.into_iter().rev() {
        if !material.bundle.iter().any(|b| same_cert(b, &pem)) {
            material.bundle.insert(0, pem);
        }
    }

    // Promote a staged CA once every webhook configuration trusts it.
    if let Some(next) = material.next_ca.clone() {
        let everywhere = match published {
            None => true,
            Some(bundles) => {
                !bundles.is_empty()
                    && bundles
                        .iter()
                        .all(|b| split_pem(b).iter().any(|p| same_cert(p, &next.cert_pem)))
            }
        };
        if everywhere {
            material.serving = issue(&next, now, settings)?;
            material.ca = next;
            material.next_ca = None;
            // Current CA first.
            let current = material.ca.cert_pem.clone();
            material.bundle.sort_by_key(|p| !same_cert(p, &current));
            changes.push(Change::CaPromoted);
        }
    } else if requested == Some(Requested::Ca)
        || facts(&material.ca.cert_pem)
            .is_some_and(|ca| ca.not_after - settings.ca_renew_before.whole_seconds() <= ts)
    {
        let next = new_ca(now, settings)?;
        material.bundle.extend(split_pem(&next.cert_pem));
        material.next_ca = Some(next);
        changes.push(Change::CaStaged);
    }

    let asked = (requested == Some(Requested::Serving)).then(|| "rotation requested".to_owned());
    if !changes.contains(&Change::CaPromoted)
        && let Some(why) = serving_problem(&material, ts, settings).or(asked)
    {
        material.serving = issue(&material.ca, now, settings)?;
        changes.push(Change::ServingRenewed(why));
    }

    // Drop expired CAs that are neither current nor staged.
    let before = material.bundle.len();
    let (ca_pem, next_pem) = (
        material.ca.cert_pem.clone(),
        material.next_ca.as_ref().map(|n| n.cert_pem.clone()),
    );
    material.bundle.retain(|pem| {
        same_cert(pem, &ca_pem)
            || next_pem.as_deref().is_some_and(|n| same_cert(pem, n))
            || facts(pem).is_some_and(|f| f.not_after > ts)
    });
    if material.bundle.len() < before {
        changes.push(Change::BundleChanged);
    }
    if changes.is_empty() && material.bundle != original_bundle {
        // Only the bundle was incomplete (edited by hand): write it back whole.
        changes.push(Change::BundleChanged);
    }
    // A CA request is under way once a CA is staged (now or before); a serving request once a
    // serving certificate was issued in this step.
    let request_done = match requested {
        None => false,
        Some(Requested::Ca) => material.next_ca.is_some() || changes.contains(&Change::CaPromoted),
        // Always handled by `replacement` above.
        Some(Requested::ReplaceCa) => true,
        Some(Requested::Serving) => changes
            .iter()
            .any(|c| matches!(c, Change::ServingRenewed(_) | Change::CaPromoted)),
    };
    Ok(Plan {
        material,
        changes,
        request_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed_certs::secret::*;

    fn settings() -> Settings {
        Settings {
            serving_validity: Duration::hours(10),
            serving_renew_before: Duration::hours(4),
            ca_validity: Duration::hours(100),
            ca_renew_before: Duration::hours(30),
            dns: vec!["hookguard.hookguard.svc".to_owned()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn step(
        data: &BTreeMap<String, Vec<u8>>,
        published: Option<&[String]>,
        now: OffsetDateTime,
    ) -> Plan {
        plan(Some(data), published, now, &settings()).unwrap()
    }

    fn issued_by(serving: &Serving, ca: &Ca) -> bool {
        facts(&serving.cert_pem).unwrap().issuer == facts(&ca.cert_pem).unwrap().subject
    }

    #[test]
    fn settings_reject_a_renewal_window_longer_than_the_validity() {
        let mut s = settings();
        assert!(s.validate().is_ok());
        s.serving_renew_before = Duration::hours(10);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("serving certificate"), "{err}");
    }

    #[test]
    fn no_secret_creates_a_ca_and_a_serving_certificate_with_the_configured_names() {
        let p = plan(None, None, t0(), &settings()).unwrap();
        assert_eq!(p.changes, vec![Change::Created]);
        let m = &p.material;
        assert!(issued_by(&m.serving, &m.ca));
        let leaf = facts(&m.serving.cert_pem).unwrap();
        assert!(leaf.dns.contains("hookguard.hookguard.svc"));
        assert!(leaf.ips.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert_eq!(
            leaf.not_after,
            (t0() + Duration::hours(10)).unix_timestamp()
        );
        assert_eq!(m.bundle.len(), 1);
        assert!(same_cert(&m.bundle[0], &m.ca.cert_pem));
        // What is written reads back the same and needs nothing more.
        let again = step(&m.to_data(), Some(&[m.bundle_pem()]), t0());
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(&again.material, m);
    }

    #[test]
    fn a_broken_secret_is_replaced_and_says_why() {
        let mut data = plan(None, None, t0(), &settings())
            .unwrap()
            .material
            .to_data();
        data.remove(TLS_KEY);
        let p = step(&data, None, t0());
        assert_eq!(
            p.changes,
            vec![Change::Replaced("key tls.key missing".to_owned())]
        );
    }

    #[test]
    fn a_lost_secret_is_replaced_without_dropping_the_cas_the_api_server_trusts() {
        // Served now, published in both webhook configurations: CA 1.
        let old = plan(None, None, t0(), &settings()).unwrap().material;
        let published = [old.bundle_pem(), old.bundle_pem()];
        // An expired CA someone left in a bundle.
        let expired = plan(None, None, t0() - Duration::hours(200), &settings())
            .unwrap()
            .material;
        let with_expired = [format!("{}{}", old.bundle_pem(), expired.bundle_pem())];
        let later = t0() + Duration::hours(1);
        let mut broken = old.to_data();
        broken.remove(TLS_KEY);
        for (current, published) in [
            (None, &published[..]),
            (Some(&broken), &published[..]),
            (None, &with_expired[..]),
        ] {
            let p = plan(current, Some(published), later, &settings()).unwrap();
            let m = &p.material;
            assert_ne!(m.ca, old.ca, "{:?}", p.changes);
            assert!(issued_by(&m.serving, &m.ca));
            // The new CA first, then the one the replicas still serve; never the expired one.
            assert_eq!(m.bundle.len(), 2, "{:?}", p.changes);
            assert!(same_cert(&m.bundle[0], &m.ca.cert_pem));
            assert!(same_cert(&m.bundle[1], &old.ca.cert_pem));
            // Written, it is stable: the old CA stays until it expires, then leaves.
            let again = step(&m.to_data(), Some(&[m.bundle_pem()]), later);
            assert!(again.changes.is_empty(), "{:?}", again.changes);
            let past_old = step(
                &m.to_data(),
                Some(&[m.bundle_pem()]),
                t0() + Duration::hours(101),
            );
            assert!(
                !past_old
                    .material
                    .bundle
                    .iter()
                    .any(|b| same_cert(b, &old.ca.cert_pem))
            );
        }
        // An expired CA in the Secret: the replacement keeps the other published CAs only.
        let p = plan(
            Some(&expired.to_data()),
            Some(&with_expired),
            later,
            &settings(),
        )
        .unwrap();
        assert_eq!(
            p.changes,
            vec![Change::Replaced("the CA expired".to_owned())]
        );
        assert_eq!(p.material.bundle.len(), 2);
    }

    #[test]
    fn a_valid_secret_is_servable_and_an_expired_or_foreign_one_is_not() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        assert!(servable(&m, t0()));
        assert!(servable(&m, t0() + Duration::hours(9)));
        assert!(!servable(&m, t0() + Duration::hours(10)));
        // CAs are named by their creation time: another one, a second later.
        let other = plan(None, None, t0() + Duration::seconds(1), &settings())
            .unwrap()
            .material;
        let foreign = Material {
            serving: other.serving,
            ..m
        };
        assert!(!servable(&foreign, t0()));
    }

    #[test]
    fn the_serving_certificate_is_renewed_inside_its_window_from_the_same_ca() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        let published = [m.bundle_pem()];
        let quiet = step(&m.to_data(), Some(&published), t0() + Duration::hours(5));
        assert!(quiet.changes.is_empty());
        let p = step(&m.to_data(), Some(&published), t0() + Duration::hours(6));
        assert!(
            matches!(p.changes.as_slice(), [Change::ServingRenewed(why)] if why.contains("expires within")),
            "{:?}",
            p.changes
        );
        assert_eq!(p.material.ca, m.ca);
        assert_eq!(p.material.bundle, m.bundle);
        assert_ne!(p.material.serving, m.serving);
        assert!(issued_by(&p.material.serving, &m.ca));
    }

    #[test]
    fn changed_names_reissue_the_serving_certificate() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        let mut s = settings();
        s.dns
            .push("hookguard.hookguard.svc.cluster.local".to_owned());
        let p = plan(Some(&m.to_data()), None, t0(), &s).unwrap();
        assert!(
            matches!(p.changes.as_slice(), [Change::ServingRenewed(why)] if why.contains("names"))
        );
    }

    #[test]
    fn ca_rotation_stages_then_promotes_only_once_published_and_keeps_the_old_ca_until_it_expires()
    {
        let m0 = plan(None, None, t0(), &settings()).unwrap().material;
        let old_published = [m0.bundle_pem()];
        // 70 h: inside the CA's 30 h renewal window (expires at 100 h).
        let at = t0() + Duration::hours(70);
        let staged = step(&m0.to_data(), Some(&old_published), at);
        assert!(
            staged.changes.contains(&Change::CaStaged),
            "{:?}",
            staged.changes
        );
        let m1 = staged.material;
        let next = m1.next_ca.clone().unwrap();
        assert_eq!(m1.ca, m0.ca, "the staged CA signs nothing yet");
        assert_eq!(m1.bundle.len(), 2);
        assert!(issued_by(&m1.serving, &m0.ca));

        // Not yet published: nothing is promoted.
        let waiting = step(&m1.to_data(), Some(&old_published), at);
        assert!(!waiting.changes.contains(&Change::CaPromoted));
        assert_eq!(waiting.material.next_ca.as_ref(), Some(&next));
        // Published in only one of two configurations: still waiting.
        let half = [m1.bundle_pem(), m0.bundle_pem()];
        assert!(
            step(&m1.to_data(), Some(&half), at)
                .material
                .next_ca
                .is_some()
        );

        // Published everywhere: promoted, serving certificate from the new CA, old CA still trusted.
        let both = [m1.bundle_pem(), m1.bundle_pem()];
        let promoted = step(&m1.to_data(), Some(&both), at);
        assert_eq!(promoted.changes, vec![Change::CaPromoted]);
        let m2 = promoted.material;
        assert_eq!(m2.ca, next);
        assert!(m2.next_ca.is_none());
        assert!(issued_by(&m2.serving, &next));
        assert_eq!(m2.bundle.len(), 2);
        assert!(same_cert(&m2.bundle[0], &next.cert_pem), "current CA first");
        let settled = step(&m2.to_data(), Some(&[m2.bundle_pem()]), at);
        assert!(settled.changes.is_empty(), "{:?}", settled.changes);

        // After the old CA expired (100 h), it is pruned. The serving certificate issued at 70 h
        // expires at 80 h, so it has been renewed by then too.
        let later = step(&m2.to_data(), None, t0() + Duration::hours(101));
        assert!(later.changes.contains(&Change::BundleChanged));
        assert_eq!(later.material.bundle.len(), 1);
        assert!(same_cert(&later.material.bundle[0], &next.cert_pem));
    }

    #[test]
    fn a_serving_certificate_never_outlives_its_ca() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        // 95 h: the CA (staged replacement not yet published) expires at 100 h.
        let mut s = settings();
        s.serving_renew_before = Duration::minutes(1);
        let p = plan(
            Some(&m.to_data()),
            Some(&[m.bundle_pem()]),
            t0() + Duration::hours(95),
            &s,
        )
        .unwrap();
        let leaf = facts(&p.material.serving.cert_pem).unwrap();
        let ca = facts(&m.ca.cert_pem).unwrap();
        assert!(leaf.not_after <= ca.not_after);
    }

    #[test]
    fn rotations_on_request() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        let published = [m.bundle_pem()];
        let at = t0() + Duration::hours(1);
        let serving = plan_requested(
            Some(&m.to_data()),
            Some(&published),
            at,
            &settings(),
            Some(Requested::Serving),
        )
        .unwrap();
        assert_eq!(
            serving.changes,
            vec![Change::ServingRenewed("rotation requested".to_owned())]
        );
        assert!(serving.request_done);
        assert_eq!(serving.material.ca, m.ca);
        // A CA request stages a CA at once (far from the renewal window); the promotion follows
        // the usual way, once published.
        let ca = plan_requested(
            Some(&m.to_data()),
            Some(&published),
            at,
            &settings(),
            Some(Requested::Ca),
        )
        .unwrap();
        assert_eq!(ca.changes, vec![Change::CaStaged]);
        assert!(ca.request_done);
        let staged = ca.material;
        let promoted = step(&staged.to_data(), Some(&[staged.bundle_pem()]), at);
        assert_eq!(promoted.changes, vec![Change::CaPromoted]);
        assert_eq!(Requested::parse(" ca "), Some(Requested::Ca));
        assert_eq!(Requested::parse("everything"), None);
        // replace-ca: a new CA alone in the bundle, the old one distrusted at once.
        assert_eq!(Requested::parse("replace-ca"), Some(Requested::ReplaceCa));
        let replaced = plan_requested(
            Some(&m.to_data()),
            Some(&published),
            at,
            &settings(),
            Some(Requested::ReplaceCa),
        )
        .unwrap();
        assert!(replaced.request_done);
        assert!(matches!(replaced.changes.as_slice(), [Change::Replaced(_)]));
        assert_ne!(replaced.material.ca, m.ca);
        assert_eq!(replaced.material.bundle.len(), 1);
        // Also when the Secret had to be replaced anyway (a key missing).
        let mut broken = m.to_data();
        broken.remove(TLS_KEY);
        let replaced_broken = plan_requested(
            Some(&broken),
            Some(&published),
            at,
            &settings(),
            Some(Requested::ReplaceCa),
        )
        .unwrap();
        assert!(replaced_broken.request_done);
        assert_eq!(replaced_broken.material.bundle.len(), 1);
        assert!(same_cert(
            &replaced.material.bundle[0],
            &replaced.material.ca.cert_pem
        ));
    }

    #[test]
    fn an_expired_ca_is_replaced() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        let p = step(&m.to_data(), None, t0() + Duration::hours(101));
        assert_eq!(
            p.changes,
            vec![Change::Replaced("the CA expired".to_owned())]
        );
        assert_ne!(p.material.ca, m.ca);
        assert!(issued_by(&p.material.serving, &p.material.ca));
    }

    #[test]
    fn a_bundle_missing_the_current_ca_is_repaired() {
        let m = plan(None, None, t0(), &settings()).unwrap().material;
        let mut data = m.to_data();
        data.insert(CA_BUNDLE.to_owned(), Vec::new());
        let p = step(&data, None, t0());
        assert_eq!(p.changes, vec![Change::BundleChanged]);
        assert_eq!(p.material.bundle, m.bundle);
    }
}
