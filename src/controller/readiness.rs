//! Readiness in Kubernetes mode: `/readyz` turns ready only once the first
//! complete list of Gslbs (of every served group) has been applied, that
//! is, every Gslb of that list went through one reconcile (served, or
//! reported as not served). Until then a pod would answer NXDOMAIN for
//! hosts it simply has not read yet, and a rollout must not send it
//! traffic. An API server that cannot be reached keeps the pod unready.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::store::{Group, Target};

/// Tracks the first list of each group until all of it is reconciled.
pub struct InitialSync {
    /// Groups whose first list has not completed yet.
    groups_left: BTreeSet<Group>,
    /// Listed Gslbs not reconciled yet.
    waiting: BTreeSet<Target>,
    /// Gslbs reconciled before their group's list completed.
    reconciled: BTreeSet<Target>,
    ready: Arc<AtomicBool>,
    done: bool,
}

impl InitialSync {
    /// Waits for the first list of each of `groups`; sets `ready` when done.
    pub fn new(groups: impl IntoIterator<Item = Group>, ready: Arc<AtomicBool>) -> InitialSync {
        let mut s = InitialSync {
            groups_left: groups.into_iter().collect(),
            waiting: BTreeSet::new(),
            reconciled: BTreeSet::new(),
            ready,
            done: false,
        };
        s.check();
        s
    }

    /// Already satisfied (tests that drive `reconcile` directly).
    pub fn done() -> InitialSync {
        InitialSync::new([], Arc::new(AtomicBool::new(false)))
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first complete list of `group` holds `listed`.
    pub fn listed(&mut self, group: Group, listed: impl IntoIterator<Item = Target>) {
        if self.done || !self.groups_left.remove(&group) {
            return;
        }
        for t in listed {
            if !self.reconciled.contains(&t) {
                self.waiting.insert(t);
            }
        }
        self.check();
    }

    /// `t` went through a reconcile (whatever its outcome), or is gone.
    pub fn reconciled(&mut self, t: &Target) {
        if self.done {
            return;
        }
        if !self.waiting.remove(t) {
            self.reconciled.insert(t.clone());
        }
        self.check();
    }

    fn check(&mut self) {
        if !self.done && self.groups_left.is_empty() && self.waiting.is_empty() {
            self.done = true;
            self.reconciled.clear();
            self.ready.store(true, Ordering::Release);
            tracing::info!("first list of Gslbs applied: ready");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(group: Group, name: &str) -> Target {
        Target {
            group,
            namespace: "demo".into(),
            name: name.into(),
        }
    }

    #[test]
    fn ready_only_after_every_listed_gslb_of_every_group() {
        let ready = Arc::new(AtomicBool::new(false));
        let mut s = InitialSync::new([Group::Canonical, Group::Legacy], ready.clone());
        // a reconcile may finish before its group's list is complete
        s.reconciled(&t(Group::Canonical, "a"));
        s.listed(
            Group::Canonical,
            [t(Group::Canonical, "a"), t(Group::Canonical, "b")],
        );
        assert!(!ready.load(Ordering::Acquire));
        s.reconciled(&t(Group::Canonical, "b"));
        assert!(!ready.load(Ordering::Acquire), "the legacy list is not complete");
        s.listed(Group::Legacy, []);
        assert!(ready.load(Ordering::Acquire));
        assert!(s.is_done());
    }

    #[test]
    fn an_empty_list_is_ready_at_once_and_no_list_never() {
        let ready = Arc::new(AtomicBool::new(false));
        let mut s = InitialSync::new([Group::Canonical], ready.clone());
        s.reconciled(&t(Group::Canonical, "x"));
        assert!(
            !ready.load(Ordering::Acquire),
            "no list yet: API server unreachable"
        );
        s.listed(Group::Canonical, []);
        assert!(ready.load(Ordering::Acquire));
        assert!(InitialSync::done().is_done());
    }
}
