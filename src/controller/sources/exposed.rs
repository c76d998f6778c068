//! Which addresses a Gslb's application records publish (upstream §5.2).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{ANNOTATION_EXPOSED_HOSTNAMES, ANNOTATION_EXPOSED_IPS, ResolveError, SourceAddresses};
use crate::core::names::{normalize, validate_dns_name};

/// The exposed addresses of a Gslb: IPs to publish as they are, and
/// hostnames the controller still resolves (A and AAAA, through the edge DNS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExposedPlan {
    pub ips: Vec<IpAddr>,
    pub resolve: Vec<String>,
}

/// Exposed-address precedence, highest first:
/// 1. the Gslb annotation `k8gb.io/exposed-hostnames` (comma list; resolve these);
/// 2. the Gslb annotation `k8gb.io/exposed-ip-addresses` (comma list; any
///    invalid entry is an error);
/// 3. `cluster_exposed_ips` (`CLUSTER_EXPOSED_IPS`), used only when neither
///    annotation is present;
/// 4. the addresses the source publishes (IPs, and hostnames to resolve).
///
/// IPv6 is kept everywhere. Entries are trimmed and de-duplicated.
pub fn exposed_plan(
    annotations: &BTreeMap<String, String>,
    cluster_exposed_ips: &[IpAddr],
    source: &SourceAddresses,
) -> Result<ExposedPlan, ResolveError> {
    if let Some(value) = annotations.get(ANNOTATION_EXPOSED_HOSTNAMES) {
        let invalid = |detail: String| ResolveError::InvalidAnnotation {
            key: ANNOTATION_EXPOSED_HOSTNAMES.to_string(),
            value: value.clone(),
            detail,
        };
        let mut resolve = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            validate_dns_name(entry).map_err(|e| invalid(format!("{entry:?} {e}")))?;
            let name = normalize(entry);
            if !resolve.contains(&name) {
                resolve.push(name);
            }
        }
        if resolve.is_empty() {
            return Err(invalid("no hostname given".to_string()));
        }
        return Ok(ExposedPlan {
            ips: Vec::new(),
            resolve,
        });
    }
    if let Some(value) = annotations.get(ANNOTATION_EXPOSED_IPS) {
        let mut ips = Vec::new();
        for entry in value.split(',').map(str::trim) {
            let ip: IpAddr = entry.parse().map_err(|_| ResolveError::InvalidAnnotation {
                key: ANNOTATION_EXPOSED_IPS.to_string(),
                value: value.clone(),
                detail: format!("invalid IP address: {entry:?}"),
            })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        return Ok(ExposedPlan {
            ips,
            resolve: Vec::new(),
        });
    }
    if !cluster_exposed_ips.is_empty() {
        let mut ips = Vec::new();
        for ip in cluster_exposed_ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        return Ok(ExposedPlan {
            ips,
            resolve: Vec::new(),
        });
    }
    Ok(ExposedPlan {
        ips: source.ips.clone(),
        resolve: source.hostnames.clone(),
    })
}
