//! DNS names, geotags and zones: validation, label-suffix zone matching and
//! upstream's naming rules (`localtargets-<host>`, `gslb-ns-<geotag>-…`).
//!
//! Pure functions over strings. Names are compared case-insensitively and
//! without a trailing dot; [`normalize`] produces that canonical form.

use std::fmt;

/// The longest DNS name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// The label prefix upstream k8gb uses for a cluster's own healthy targets.
pub const LOCALTARGETS_PREFIX: &str = "localtargets-";
/// Upstream's default glue-record prefix (`GLUEA_PREFIX`).
pub const DEFAULT_GLUE_PREFIX: &str = "gslb-ns-";

/// Why a name, geotag or zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {len} characters long, more than the 253 a DNS name may have")]
    NameTooLong { len: usize },
    #[error("has a label of {len} characters ({label:?}), more than the 63 a label may have")]
    LabelTooLong { label: String, len: usize },
    #[error("has an empty label")]
    EmptyLabel,
    #[error("has an invalid character {ch:?} (letters, digits, '-' and '_' only)")]
    BadChar { ch: char },
    #[error("has a label that starts or ends with '-' ({label:?})")]
    HyphenEdge { label: String },
    #[error("is not a valid geotag: only letters, digits and '-' are allowed")]
    BadGeoTag,
    #[error("{zone:?} is not a subdomain of {parent:?}")]
    NotSubdomain { zone: String, parent: String },
}

/// Lower-cases a name and strips one trailing dot: the canonical form used for
/// every comparison in this crate.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Checks a DNS name in presentation form (no trailing dot needed): total and
/// label lengths as RFC 1035, and host-name characters (RFC 1123, plus `_`,
/// which service labels use). A leading `*` label is not allowed.
pub fn validate_dns_name(name: &str) -> Result<(), NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::NameTooLong { len: name.len() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong {
                label: label.to_string(),
                len: label.len(),
            });
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(NameError::BadChar { ch });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::HyphenEdge {
                label: label.to_string(),
            });
        }
    }
    Ok(())
}

/// A cluster's geographic tag (`CLUSTER_GEO_TAG`): letters, digits and `-`,
/// as upstream validates it. Compared exactly (upstream does not fold case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GeoTag(String);

impl GeoTag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(NameError::BadGeoTag);
        }
        Ok(GeoTag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GeoTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Is `name` equal to `zone` or below it? Label-suffix matching: unlike
/// upstream's substring test, `app.notcloud.example.com` is not in
/// `cloud.example.com`. Both arguments must already be [`normalize`]d.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// The most specific zone that contains `name` (longest label-suffix match),
/// so nested zones resolve to the innermost one. Arguments normalized.
pub fn best_zone<'a, I>(name: &str, zones: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    zones
        .into_iter()
        .filter(|z| in_zone(name, z))
        .max_by_key(|z| z.len())
}

/// `localtargets-<host>`: the prefix glued onto the first label, as upstream.
/// Fails when the derived name breaks the RFC 1035 length limits.
pub fn localtargets_name(host: &str) -> Result<String, NameError> {
    let name = format!("{LOCALTARGETS_PREFIX}{}", normalize(host));
    validate_dns_name(&name)?;
    Ok(name)
}

/// If `name` is `localtargets-<host>`, returns `<host>`.
pub fn strip_localtargets(name: &str) -> Option<&str> {
    name.strip_prefix(LOCALTARGETS_PREFIX)
}

/// Checks that `zone` is a proper subdomain of `parent` (the ZoneDelegation
/// CEL rule) and returns the part of `zone` left of `.parent`.
pub fn zone_relative_to_parent<'a>(zone: &'a str, parent: &str) -> Result<&'a str, NameError> {
    let not_sub = || NameError::NotSubdomain {
        zone: zone.to_string(),
        parent: parent.to_string(),
    };
    if zone.len() <= parent.len() + 1 || !in_zone(zone, parent) {
        return Err(not_sub());
    }
    Ok(&zone[..zone.len() - parent.len() - 1])
}

/// The NS name of one cluster for a load-balanced zone, upstream's rule:
/// `<prefix><geotag>-<lbzone minus ".parent", dots→dashes>.<parent>`.
/// Example: prefix `gslb-ns-`, geotag `us`, zone `app.team.cloud.example.com`
/// under `example.com` → `gslb-ns-us-app-team-cloud.example.com`.
pub fn ns_name(prefix: &str, geotag: &GeoTag, lb_zone: &str, parent: &str) -> Result<String, NameError> {
    let lb_zone = normalize(lb_zone);
    let parent = normalize(parent);
    let relative = zone_relative_to_parent(&lb_zone, &parent)?;
    let name = format!(
        "{}{}-{}.{}",
        prefix.to_ascii_lowercase(),
        geotag.as_str().to_ascii_lowercase(),
        relative.replace('.', "-"),
        parent
    );
    validate_dns_name(&name)?;
    Ok(name)
}

/// Recovers the geotag from an NS name made by [`ns_name`]: strips the prefix
/// (or upstream's default prefix, which upstream also accepts) and the
/// `-<zone-dashes>.<parent>` suffix. `None` when the name is not of that shape.
pub fn geotag_from_ns_name(prefix: &str, ns: &str, lb_zone: &str, parent: &str) -> Option<GeoTag> {
    let ns = normalize(ns);
    let lb_zone = normalize(lb_zone);
    let parent = normalize(parent);
    let relative = zone_relative_to_parent(&lb_zone, &parent).ok()?;
    let suffix = format!("-{}.{}", relative.replace('.', "-"), parent);
    let prefix = prefix.to_ascii_lowercase();
    let rest = ns
        .strip_prefix(prefix.as_str())
        .or_else(|| ns.strip_prefix(DEFAULT_GLUE_PREFIX))?;
    let tag = rest.strip_suffix(suffix.as_str())?;
    GeoTag::parse(tag).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> GeoTag {
        GeoTag::parse(s).expect("valid tag")
    }

    #[test]
    fn geotags() {
        assert!(GeoTag::parse("eu-west-1").is_ok());
        assert!(GeoTag::parse("EU1").is_ok());
        assert_eq!(GeoTag::parse("eu west"), Err(NameError::BadGeoTag));
        assert_eq!(GeoTag::parse("eu_1"), Err(NameError::BadGeoTag));
        assert_eq!(GeoTag::parse("eu.1"), Err(NameError::BadGeoTag));
        assert_eq!(GeoTag::parse(""), Err(NameError::Empty));
    }

    #[test]
    fn suffix_not_substring() {
        assert!(in_zone("app.cloud.example.com", "cloud.example.com"));
        assert!(in_zone("cloud.example.com", "cloud.example.com"));
        assert!(!in_zone("app.notcloud.example.com", "cloud.example.com"));
        // upstream's substring test would match this one
        assert!(!in_zone("cloud.example.com.evil.org", "cloud.example.com"));
        assert!(!in_zone("example.com", "cloud.example.com"));
    }

    #[test]
    fn innermost_zone_wins() {
        let zones = ["example.com", "cloud.example.com", "eu.cloud.example.com"];
        assert_eq!(
            best_zone("a.eu.cloud.example.com", zones),
            Some("eu.cloud.example.com")
        );
        assert_eq!(best_zone("a.cloud.example.com", zones), Some("cloud.example.com"));
        assert_eq!(best_zone("a.other.org", zones), None);
    }

    #[test]
    fn upstream_ns_names() {
        assert_eq!(
            ns_name(
                "gslb-ns-",
                &tag("us"),
                "app.team.cloud.example.com",
                "example.com"
            )
            .as_deref(),
            Ok("gslb-ns-us-app-team-cloud.example.com")
        );
        assert_eq!(
            ns_name("gslb-ns-", &tag("eu"), "cloud.example.com.", "Example.COM").as_deref(),
            Ok("gslb-ns-eu-cloud.example.com")
        );
        assert_eq!(
            ns_name("", &tag("eu"), "cloud.example.com", "example.com").as_deref(),
            Ok("eu-cloud.example.com")
        );
        assert!(matches!(
            ns_name("gslb-ns-", &tag("eu"), "example.com", "example.com"),
            Err(NameError::NotSubdomain { .. })
        ));
        assert!(matches!(
            ns_name("gslb-ns-", &tag("eu"), "cloud.example.org", "example.com"),
            Err(NameError::NotSubdomain { .. })
        ));
        let long = format!("{}.example.com", "a".repeat(60));
        assert!(matches!(
            ns_name("gslb-ns-", &tag("eu"), &long, "example.com"),
            Err(NameError::LabelTooLong { .. })
        ));
    }

    #[test]
    fn geotag_round_trip() {
        for prefix in ["gslb-ns-", "", "edge-"] {
            let ns = ns_name(prefix, &tag("eu-west-1"), "cloud.example.com", "example.com").unwrap();
            assert_eq!(
                geotag_from_ns_name(prefix, &ns, "cloud.example.com", "example.com"),
                Some(tag("eu-west-1"))
            );
        }
        // the default prefix is recognised even when a custom one is configured
        assert_eq!(
            geotag_from_ns_name(
                "edge-",
                "gslb-ns-us-cloud.example.com",
                "cloud.example.com",
                "example.com"
            ),
            Some(tag("us"))
        );
        assert_eq!(
            geotag_from_ns_name("gslb-ns-", "ns1.example.com", "cloud.example.com", "example.com"),
            None
        );
    }

    #[test]
    fn localtargets_names() {
        assert_eq!(
            localtargets_name("App.Cloud.Example.com.").as_deref(),
            Ok("localtargets-app.cloud.example.com")
        );
        let long_label = format!("{}.cloud.example.com", "a".repeat(55));
        assert!(matches!(
            localtargets_name(&long_label),
            Err(NameError::LabelTooLong { .. })
        ));
        assert_eq!(strip_localtargets("localtargets-app.x"), Some("app.x"));
        assert_eq!(strip_localtargets("app.x"), None);
    }

    #[test]
    fn dns_names() {
        assert!(validate_dns_name("cloud.example.com").is_ok());
        assert!(validate_dns_name("cloud.example.com.").is_ok());
        assert!(validate_dns_name("_svc.example.com").is_ok());
        assert_eq!(validate_dns_name("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(validate_dns_name("a b.com"), Err(NameError::BadChar { ch: ' ' }));
        assert!(matches!(
            validate_dns_name("-a.com"),
            Err(NameError::HyphenEdge { .. })
        ));
        let too_long = vec!["abcdefghi"; 30].join(".");
        assert!(matches!(
            validate_dns_name(&too_long),
            Err(NameError::NameTooLong { .. })
        ));
    }
}
