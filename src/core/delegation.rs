//! The delegation planner: what this cluster must change at the edge (the
//! parent zone) so that it delegates the load-balanced zone to every active
//! cluster, with this cluster's glue. Pure: it compares what the edge holds
//! with what we want and returns one update with prerequisites, so that two
//! clusters updating at once cannot clobber each other (the second update's
//! prerequisite fails and it re-reads).
//!
//! Rules: we add our own NS name and any active peer's NS name that is
//! missing; we never remove another cluster's NS record or touch another
//! cluster's glue (a partitioned cluster must not delete a healthy one); we
//! replace only our own glue. On withdrawal we remove our NS and glue, and
//! the last cluster removes the delegation (the whole NS RRset).

use std::collections::BTreeSet;
use std::net::IpAddr;

/// What the edge holds for the zone, as read from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EdgeView {
    /// NS names of the load-balanced zone at the parent.
    pub ns: BTreeSet<String>,
    /// Addresses of this cluster's NS name (its glue).
    pub own_glue: BTreeSet<IpAddr>,
}

/// What this cluster wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// This cluster's NS name.
    pub own_ns: String,
    /// NS names that should be in the RRset: ours and every active peer's.
    pub active_ns: BTreeSet<String>,
    /// This cluster's DNS addresses (glue).
    pub own_glue: BTreeSet<IpAddr>,
}

/// One record-level change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    AddNs(String),
    RemoveNs(String),
    /// Remove the zone's whole NS RRset (the last cluster withdraws).
    RemoveDelegation,
    AddGlue(IpAddr),
    RemoveGlue(IpAddr),
}

/// An update: apply `changes` only if the NS RRset is still exactly `expect_ns`
/// (empty: the RRset must not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub expect_ns: BTreeSet<String>,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The update that makes the edge delegate to us and the active peers.
pub fn plan(edge: &EdgeView, want: &Desired) -> Plan {
    let mut changes = Vec::new();
    let mut ns: BTreeSet<&String> = want.active_ns.iter().collect();
    ns.insert(&want.own_ns);
    for n in ns {
        if !edge.ns.contains(n) {
            changes.push(Change::AddNs(n.clone()));
        }
    }
    for ip in want.own_glue.difference(&edge.own_glue) {
        changes.push(Change::AddGlue(*ip));
    }
    for ip in edge.own_glue.difference(&want.own_glue) {
        changes.push(Change::RemoveGlue(*ip));
    }
    Plan {
        expect_ns: edge.ns.clone(),
        changes,
    }
}

/// The update that withdraws this cluster: its NS record and its glue; the
/// whole delegation when it is the last NS name left.
pub fn plan_withdraw(edge: &EdgeView, want: &Desired) -> Plan {
    let mut changes = Vec::new();
    let others = edge.ns.iter().any(|n| *n != want.own_ns);
    if edge.ns.contains(&want.own_ns) {
        changes.push(if others {
            Change::RemoveNs(want.own_ns.clone())
        } else {
            Change::RemoveDelegation
        });
    }
    for ip in &edge.own_glue {
        changes.push(Change::RemoveGlue(*ip));
    }
    Plan {
        expect_ns: edge.ns.clone(),
        changes,
    }
}

/// Why an update was not applied by [`simulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrerequisiteFailed;

/// Applies a plan to an edge the way an RFC 2136 server does: atomically,
/// and only when the prerequisite still holds. Used by tests, and documents
/// the semantics the I/O layer relies on.
pub fn simulate(edge: &EdgeView, p: &Plan) -> Result<EdgeView, PrerequisiteFailed> {
    if edge.ns != p.expect_ns {
        return Err(PrerequisiteFailed);
    }
    let mut out = edge.clone();
    for c in &p.changes {
        match c {
            Change::AddNs(n) => {
                out.ns.insert(n.clone());
            }
            Change::RemoveNs(n) => {
                out.ns.remove(n);
            }
            Change::RemoveDelegation => out.ns.clear(),
            Change::AddGlue(ip) => {
                out.own_glue.insert(*ip);
            }
            Change::RemoveGlue(ip) => {
                out.own_glue.remove(ip);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EU: &str = "gslb-ns-eu-cloud.example.com";
    const US: &str = "gslb-ns-us-cloud.example.com";
    const AP: &str = "gslb-ns-ap-cloud.example.com";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn want(active: &[&str], glue: &[&str]) -> Desired {
        Desired {
            own_ns: EU.into(),
            active_ns: set(active),
            own_glue: ips(glue),
        }
    }

    #[test]
    fn empty_edge() {
        let edge = EdgeView::default();
        let p = plan(&edge, &want(&[EU, US], &["192.0.2.1", "2001:db8::1"]));
        assert!(
            p.expect_ns.is_empty(),
            "prerequisite: the NS RRset does not exist yet"
        );
        assert_eq!(
            p.changes,
            vec![
                Change::AddNs(EU.into()),
                Change::AddNs(US.into()),
                Change::AddGlue("192.0.2.1".parse().unwrap()),
                Change::AddGlue("2001:db8::1".parse().unwrap()),
            ]
        );
        let after = simulate(&edge, &p).unwrap();
        assert!(
            plan(&after, &want(&[EU, US], &["192.0.2.1", "2001:db8::1"])).is_empty(),
            "idempotent"
        );
    }

    #[test]
    fn partial_edge() {
        let edge = EdgeView {
            ns: set(&[EU]),
            own_glue: BTreeSet::new(),
        };
        let p = plan(&edge, &want(&[EU, US, AP], &["192.0.2.1"]));
        assert_eq!(p.expect_ns, set(&[EU]));
        assert_eq!(
            p.changes,
            vec![
                Change::AddNs(AP.into()),
                Change::AddNs(US.into()),
                Change::AddGlue("192.0.2.1".parse().unwrap())
            ]
        );
    }

    #[test]
    fn foreign_ns_and_glue_are_never_touched() {
        // us is at the edge but not active for us (down, or partitioned from us)
        let edge = EdgeView {
            ns: set(&[EU, US]),
            own_glue: ips(&["192.0.2.1"]),
        };
        let p = plan(&edge, &want(&[EU], &["192.0.2.1"]));
        assert!(p.is_empty(), "we never remove another cluster's NS record: {p:?}");
        // the plan speaks only of our own glue: foreign glue is not even read
        let w = plan_withdraw(&edge, &want(&[EU], &["192.0.2.1"]));
        assert!(
            w.changes
                .iter()
                .all(|c| !matches!(c, Change::RemoveNs(n) if n != EU))
        );
    }

    #[test]
    fn stale_own_glue_is_replaced() {
        let edge = EdgeView {
            ns: set(&[EU, US]),
            own_glue: ips(&["192.0.2.1", "192.0.2.9"]),
        };
        let p = plan(&edge, &want(&[EU, US], &["192.0.2.1", "192.0.2.2"]));
        assert_eq!(
            p.changes,
            vec![
                Change::AddGlue("192.0.2.2".parse().unwrap()),
                Change::RemoveGlue("192.0.2.9".parse().unwrap())
            ]
        );
    }

    #[test]
    fn concurrent_change_fails_the_prerequisite() {
        let read = EdgeView {
            ns: set(&[US]),
            own_glue: BTreeSet::new(),
        };
        let p = plan(&read, &want(&[EU, US], &["192.0.2.1"]));
        // meanwhile ap added itself: our update must not apply on a stale view
        let now = EdgeView {
            ns: set(&[US, AP]),
            own_glue: BTreeSet::new(),
        };
        assert_eq!(simulate(&now, &p), Err(PrerequisiteFailed));
        // re-read and re-plan: both survive
        let p2 = plan(&now, &want(&[EU, US], &["192.0.2.1"]));
        let after = simulate(&now, &p2).unwrap();
        assert_eq!(after.ns, set(&[EU, US, AP]));
    }

    #[test]
    fn withdrawal_and_the_last_cluster() {
        let edge = EdgeView {
            ns: set(&[EU, US]),
            own_glue: ips(&["192.0.2.1"]),
        };
        let w = plan_withdraw(&edge, &want(&[EU, US], &["192.0.2.1"]));
        assert_eq!(
            w.changes,
            vec![
                Change::RemoveNs(EU.into()),
                Change::RemoveGlue("192.0.2.1".parse().unwrap())
            ]
        );
        let after = simulate(&edge, &w).unwrap();
        assert_eq!(after.ns, set(&[US]));
        let last = EdgeView {
            ns: set(&[EU]),
            own_glue: ips(&["192.0.2.1"]),
        };
        let w = plan_withdraw(&last, &want(&[EU], &["192.0.2.1"]));
        assert_eq!(w.changes[0], Change::RemoveDelegation);
        assert!(simulate(&last, &w).unwrap().ns.is_empty());
        assert!(
            plan_withdraw(&EdgeView::default(), &want(&[EU], &[])).is_empty(),
            "nothing to withdraw"
        );
    }
}
