//! Local health of a Gslb host (upstream §3): per-Service health combined by
//! the Gslb's `serviceHealthPolicy`.

use std::fmt;

/// Health of one host in this cluster, as upstream reports it in `status.serviceHealth`.
/// Only `Healthy` publishes `localtargets-<host>`; `Unhealthy` and `NotFound`
/// are the same for DNS and differ only in status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    Unhealthy,
    NotFound,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
            Health::NotFound => "NotFound",
        }
    }

    pub fn is_healthy(self) -> bool {
        self == Health::Healthy
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of one backing Service (or, in standalone mode, one probed target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceHealth {
    /// At least one ready endpoint.
    Healthy,
    /// The Service exists but has no ready endpoint.
    Unhealthy,
    /// The Service does not exist.
    Missing,
}

/// How several Services behind one host combine (`spec.serviceHealthPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Healthy if any Service is healthy (upstream's default).
    #[default]
    Any,
    /// Healthy only if every Service is healthy.
    All,
}

/// Combines per-Service health into the host's health, exactly as upstream:
/// no Services → NotFound; `Any`: Healthy if one is healthy, else Unhealthy
/// if one is unhealthy, else NotFound; `All`: NotFound if one is missing,
/// else Unhealthy if one is unhealthy, else Healthy.
pub fn combine(policy: Policy, services: &[ServiceHealth]) -> Health {
    if services.is_empty() {
        return Health::NotFound;
    }
    let any = |h: ServiceHealth| services.contains(&h);
    match policy {
        Policy::Any if any(ServiceHealth::Healthy) => Health::Healthy,
        Policy::Any if any(ServiceHealth::Unhealthy) => Health::Unhealthy,
        Policy::Any => Health::NotFound,
        Policy::All if any(ServiceHealth::Missing) => Health::NotFound,
        Policy::All if any(ServiceHealth::Unhealthy) => Health::Unhealthy,
        Policy::All => Health::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::Health::*;
    use super::ServiceHealth as S;
    use super::*;

    #[test]
    fn upstream_table() {
        let rows: &[(&[S], Health, Health)] = &[
            // services, Any, All
            (&[], NotFound, NotFound),
            (&[S::Healthy], Healthy, Healthy),
            (&[S::Unhealthy], Unhealthy, Unhealthy),
            (&[S::Missing], NotFound, NotFound),
            (&[S::Healthy, S::Unhealthy], Healthy, Unhealthy),
            (&[S::Healthy, S::Missing], Healthy, NotFound),
            (&[S::Unhealthy, S::Missing], Unhealthy, NotFound),
            (&[S::Healthy, S::Healthy], Healthy, Healthy),
            (&[S::Healthy, S::Unhealthy, S::Missing], Healthy, NotFound),
        ];
        for (services, any, all) in rows {
            assert_eq!(combine(Policy::Any, services), *any, "Any {services:?}");
            assert_eq!(combine(Policy::All, services), *all, "All {services:?}");
        }
    }
}
