//! The controller's caches: one reflector per source kind the cluster
//! serves, trimmed (no managedFields, no last-applied annotation) to keep
//! memory small, and a dependency index that maps a change of any cached
//! object to the Gslbs whose last resolution read it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sources::{Dependency, Lookup, SourceKind, Unavailable};

/// Which Gslb API a reconcile target lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `k8gb.io/v1beta1`.
    Canonical,
    /// `k8gb.absa.oss/v1beta1`.
    Legacy,
}

/// A Gslb to reconcile again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub group: Group,
    pub namespace: String,
    pub name: String,
}

/// Dependency → the Gslbs that read it.
#[derive(Default)]
pub struct DepIndex {
    by_dep: HashMap<Dependency, BTreeSet<Target>>,
    by_target: HashMap<Target, Vec<Dependency>>,
}

impl DepIndex {
    /// Replaces what `target` depends on.
    pub fn set(&mut self, target: &Target, deps: Vec<Dependency>) {
        self.remove(target);
        for d in &deps {
            self.by_dep.entry(d.clone()).or_default().insert(target.clone());
        }
        self.by_target.insert(target.clone(), deps);
    }

    pub fn remove(&mut self, target: &Target) {
        if let Some(old) = self.by_target.remove(target) {
            for d in old {
                if let Some(set) = self.by_dep.get_mut(&d) {
                    set.remove(target);
                    if set.is_empty() {
                        self.by_dep.remove(&d);
                    }
                }
            }
        }
    }

    /// The Gslbs to reconcile when an object of `kind` changed.
    pub fn affected(&self, kind: SourceKind, obj: &DynamicObject) -> BTreeSet<Target> {
        let ns = obj.namespace().unwrap_or_default();
        let mut keys = vec![
            Dependency::Object {
                kind,
                namespace: ns.clone(),
                name: obj.name_any(),
            },
            Dependency::Namespace {
                kind,
                namespace: ns.clone(),
            },
            Dependency::AllNamespaces(kind),
        ];
        if kind == SourceKind::EndpointSlice
            && let Some(svc) = obj.labels().get("kubernetes.io/service-name")
        {
            keys.push(Dependency::EndpointSlices {
                namespace: ns,
                service: svc.clone(),
            });
        }
        let mut out = BTreeSet::new();
        for k in keys {
            if let Some(set) = self.by_dep.get(&k) {
                out.extend(set.iter().cloned());
            }
        }
        out
    }

    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.by_target.keys()
    }
}

type KindMap = BTreeMap<SourceKind, (ApiResource, Store<DynamicObject>)>;
/// (namespace, service) → names of its EndpointSlices.
type SliceIndex = HashMap<(String, String), BTreeSet<String>>;

/// The reflector stores of every served kind. Shared: a kind whose CRD is
/// installed after start joins (see [`start`]).
#[derive(Clone, Default)]
pub struct Stores {
    kinds: Arc<std::sync::RwLock<KindMap>>,
    /// (namespace, service) → names of its EndpointSlices. Entries may be
    /// stale (a label changed); lookups check the label on the cached object.
    slices: Arc<Mutex<SliceIndex>>,
    /// Kinds the service account may not list: the API server's message.
    denied: Arc<Mutex<BTreeMap<SourceKind, String>>>,
}

fn service_of(o: &DynamicObject) -> Option<(String, String)> {
    let svc = o.labels().get("kubernetes.io/service-name")?;
    Some((o.namespace().unwrap_or_default(), svc.clone()))
}

impl Stores {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, KindMap> {
        self.kinds.read().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, kind: SourceKind, ar: ApiResource, store: Store<DynamicObject>) {
        self.kinds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind, (ar, store));
    }

    /// Rebuilds the EndpointSlice index from the cache (after a list).
    fn rebuild_slice_index(&self) {
        let Some(store) = self
            .read()
            .get(&SourceKind::EndpointSlice)
            .map(|(_, s)| s.clone())
        else {
            return;
        };
        let mut index = SliceIndex::new();
        for o in store.state() {
            if let Some(key) = service_of(&o) {
                index.entry(key).or_default().insert(o.name_any());
            }
        }
        *lock(&self.slices) = index;
    }

    fn index_slice(&self, o: &DynamicObject, present: bool) {
        let Some(key) = service_of(o) else { return };
        let mut index = lock(&self.slices);
        if present {
            index.entry(key).or_default().insert(o.name_any());
        } else if let Some(set) = index.get_mut(&key) {
            set.remove(&o.name_any());
            if set.is_empty() {
                index.remove(&key);
            }
        }
    }

    pub fn served(&self, kind: SourceKind) -> Option<ApiResource> {
        self.read().get(&kind).map(|(ar, _)| ar.clone())
    }

    /// Why `kind` is not cached when RBAC is the cause: the API server's
    /// refusal of the list (it names the resource and the verb).
    pub fn denied(&self, kind: SourceKind) -> Option<String> {
        lock(&self.denied).get(&kind).cloned()
    }

    /// Drops the cache of `kind`, as when it was never discovered (tests).
    #[cfg(test)]
    pub(crate) fn remove_kind(&self, kind: SourceKind) {
        self.kinds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kind);
    }

    pub(crate) fn set_denied(&self, kind: SourceKind, message: Option<String>) {
        let mut denied = lock(&self.denied);
        match message {
            Some(m) => denied.insert(kind, m),
            None => denied.remove(&kind),
        };
    }

    /// Waits until every store has its first full list, at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let stores: Vec<Store<DynamicObject>> = self.read().values().map(|(_, s)| s.clone()).collect();
        let all = futures::future::join_all(stores.iter().map(|s| s.wait_until_ready()));
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

impl Stores {
    /// Caches filled from objects (tests, tools): each kind at its first
    /// candidate version.
    pub fn from_objects(objects: impl IntoIterator<Item = (SourceKind, DynamicObject)>) -> Stores {
        let mut writers: BTreeMap<SourceKind, reflector::store::Writer<DynamicObject>> = BTreeMap::new();
        for kind in SourceKind::ALL {
            if let Some(ar) = kind.candidates().into_iter().next() {
                let mut w = reflector::store::Writer::new(ar);
                w.apply_watcher_event(&watcher::Event::Init);
                writers.insert(kind, w);
            }
        }
        // as a list: Init, InitApply…, InitDone
        for (kind, obj) in objects {
            if let Some(w) = writers.get_mut(&kind) {
                w.apply_watcher_event(&watcher::Event::InitApply(obj));
            }
        }
        let stores = Stores::default();
        for (kind, mut w) in writers {
            w.apply_watcher_event(&watcher::Event::InitDone);
            let ar = kind.candidates().into_iter().next();
            if let Some(ar) = ar {
                stores.insert(kind, ar, w.as_reader());
            }
        }
        stores.rebuild_slice_index();
        stores
    }
}

impl Lookup for Stores {
    fn get(
        &self,
        kind: SourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<DynamicObject>>, Unavailable> {
        let kinds = self.read();
        let (ar, store) = kinds.get(&kind).ok_or(Unavailable(kind))?;
        // every source kind is namespaced
        Ok(store.get(&ObjectRef::new_with(name, ar.clone()).within(namespace)))
    }

    fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Vec<Arc<DynamicObject>>, Unavailable> {
        let names: Vec<String> = lock(&self.slices)
            .get(&(namespace.to_owned(), service.to_owned()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            if let Some(o) = self.get(SourceKind::EndpointSlice, namespace, &name)?
                && service_of(&o).is_some_and(|(_, s)| s == service)
            {
                out.push(o);
            }
        }
        Ok(out)
    }

    fn list(
        &self,
        kind: SourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<DynamicObject>>, Unavailable> {
        let kinds = self.read();
        let (_, store) = kinds.get(&kind).ok_or(Unavailable(kind))?;
        Ok(store
            .state()
            .into_iter()
            .filter(|o| namespace.is_none_or(|ns| o.namespace().as_deref() == Some(ns)))
            .collect())
    }
}

/// Does the cluster serve `ar`? (Discovery of one group version.)
pub async fn is_served(client: &Client, ar: &ApiResource) -> Result<bool, kube::Error> {
    let list = if ar.group.is_empty() {
        client.list_core_api_resources(&ar.version).await
    } else {
        client.list_api_group_resources(&ar.api_version).await
    };
    match list {
        Ok(l) => Ok(l.resources.iter().any(|r| r.name == ar.plural)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops what the controller never reads, so the caches stay small.
pub fn trim(o: &mut DynamicObject) {
    o.managed_fields_mut().clear();
    o.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// What a reflector's events are reported to.
#[derive(Clone)]
struct Sinks {
    index: Arc<Mutex<DepIndex>>,
    changed: mpsc::Sender<Target>,
    ingresses: Option<mpsc::UnboundedSender<(String, String)>>,
}

/// How often kinds the cluster did not serve are looked for again (a
/// Gateway API or Istio CRD installed after start).
const REDISCOVER: Duration = Duration::from_secs(60);

/// Starts a reflector for every kind the cluster serves (the first served
/// candidate version of each). A change of a cached object sends the Gslbs
/// that depend on it to `changed`; a re-list sends every indexed Gslb.
/// Kinds not served yet are looked for again every minute; when one
/// appears, every Gslb is reconciled (those that referenced it failed).
pub async fn start(
    client: &Client,
    index: Arc<Mutex<DepIndex>>,
    changed: mpsc::Sender<Target>,
    ingresses: Option<mpsc::UnboundedSender<(String, String)>>,
    cancel: &CancellationToken,
) -> Result<Stores, kube::Error> {
    let stores = Stores::default();
    let sinks = Sinks {
        index,
        changed,
        ingresses,
    };
    // discover everything before starting anything: a failure here is
    // retried by the caller without leaving reflectors behind
    let mut found = Vec::new();
    for kind in SourceKind::ALL {
        found.push((kind, discover(client, kind).await?));
    }
    let mut missing = Vec::new();
    for (kind, ar) in found {
        match ar {
            Found::Served(ar) => spawn_reflector(client, kind, ar, &stores, &sinks, cancel),
            Found::Denied(message) => {
                warn_denied(kind, &message);
                stores.set_denied(kind, Some(message));
                missing.push(kind);
            }
            Found::Absent => {
                if kind.optional() {
                    tracing::info!(
                        kind = kind.name(),
                        "not served (or not permitted); Gslbs cannot reference it until it is"
                    );
                } else {
                    tracing::warn!(kind = kind.name(), "not served by this cluster");
                }
                missing.push(kind);
            }
        }
    }
    if !missing.is_empty() {
        let (client, stores, cancel) = (client.clone(), stores.clone(), cancel.clone());
        tokio::spawn(async move {
            while !missing.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(REDISCOVER) => {}
                }
                let mut found = false;
                for kind in std::mem::take(&mut missing) {
                    match discover(&client, kind).await {
                        Ok(Found::Served(ar)) => {
                            tracing::info!(kind = kind.name(), version = %ar.api_version, "now served; watching it");
                            stores.set_denied(kind, None);
                            spawn_reflector(&client, kind, ar, &stores, &sinks, &cancel);
                            found = true;
                        }
                        Ok(Found::Denied(message)) => {
                            stores.set_denied(kind, Some(message));
                            missing.push(kind);
                        }
                        _ => missing.push(kind),
                    }
                }
                if found {
                    let all: Vec<Target> = lock(&sinks.index).targets().cloned().collect();
                    for t in all {
                        let _ = sinks.changed.send(t).await;
                    }
                }
            }
        });
    }
    Ok(stores)
}

/// What discovery found for a kind.
#[derive(Debug)]
enum Found {
    /// The version to watch.
    Served(ApiResource),
    /// Served, but the service account may not list it: the API server's message.
    Denied(String),
    Absent,
}

/// The version of `kind` to watch: the first candidate the cluster serves
/// and the service account may list.
async fn discover(client: &Client, kind: SourceKind) -> Result<Found, kube::Error> {
    for ar in kind.candidates() {
        if !is_served(client, &ar).await? {
            continue;
        }
        // served but not permitted (the chart grants Gateway API and Istio
        // only when enabled): skip it instead of retrying a 403 forever
        let probe: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        return match probe
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(Found::Denied(s.message)),
            _ => Ok(Found::Served(ar)),
        };
    }
    Ok(Found::Absent)
}

/// The log line of a kind the service account may not list: the resource,
/// the verbs it needs and the API server's refusal.
fn warn_denied(kind: SourceKind, message: &str) {
    let resource = kind.resource();
    if kind.optional() {
        tracing::warn!(
            kind = kind.name(),
            "no RBAC permission to list {resource} (chart: gatewayapi.enabled / istio.enabled): {message}"
        );
    } else {
        tracing::error!(
            kind = kind.name(),
            "no RBAC permission to list {resource}: the ClusterRole must allow get, list, watch on it; looked for again every minute: {message}"
        );
    }
}

/// Starts the trimmed reflector of one kind and adds its cache to `stores`.
/// The retry policy of every watch: exponential from 250 ms, capped at
/// 4 s, with jitter, reset after a minute without errors. kube-rs's default
/// caps at 30 s (up to 60 s with its jitter), so a restarted API server was
/// read again only 40-60 s later (measured on a real control plane,
/// tests/kube_faults.rs); a few watches per process retrying every 4 s cost
/// an API server nothing.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    use backon::BackoffBuilder;
    struct Exp {
        builder: backon::ExponentialBuilder,
        inner: backon::ExponentialBackoff,
    }
    impl Iterator for Exp {
        type Item = std::time::Duration;
        fn next(&mut self) -> Option<std::time::Duration> {
            self.inner.next()
        }
    }
    impl kube::runtime::utils::Backoff for Exp {
        fn reset(&mut self) {
            self.inner = self.builder.build();
        }
    }
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(250))
        .with_max_delay(std::time::Duration::from_secs(4))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        Exp {
            builder,
            inner: builder.build(),
        },
        std::time::Duration::from_secs(60),
    )
}

fn spawn_reflector(
    client: &Client,
    kind: SourceKind,
    ar: ApiResource,
    stores: &Stores,
    sinks: &Sinks,
    cancel: &CancellationToken,
) {
    let writer = reflector::store::Writer::new(ar.clone());
    let store = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let stream = watcher(api, watcher::Config::default())
        .backoff(watch_backoff())
        .modify(trim)
        .reflect(writer);
    let Sinks {
        index,
        changed,
        ingresses,
    } = sinks.clone();
    let cancel = cancel.clone();
    // every Ingress change also goes to the annotation handler (§5.3)
    let hook = if kind == SourceKind::Ingress {
        ingresses
    } else {
        None
    };
    let reader = store.clone();
    let slices = (kind == SourceKind::EndpointSlice).then(|| stores.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = stream.next() => ev,
            };
            let targets: BTreeSet<Target> = match ev {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(kind = kind.name(), "watch failed, retrying: {e}");
                    continue;
                }
                Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                    if let Some(st) = &slices {
                        st.index_slice(&o, true);
                    }
                    if let Some(h) = &hook {
                        let _ = h.send((o.namespace().unwrap_or_default(), o.name_any()));
                    }
                    lock(&index).affected(kind, &o)
                }
                Some(Ok(watcher::Event::Delete(o))) => {
                    if let Some(st) = &slices {
                        st.index_slice(&o, false);
                    }
                    lock(&index).affected(kind, &o)
                }
                // after a (re-)list anything may have changed
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(st) = &slices {
                        st.rebuild_slice_index();
                    }
                    if let Some(h) = &hook {
                        for o in reader.state() {
                            let _ = h.send((o.namespace().unwrap_or_default(), o.name_any()));
                        }
                    }
                    lock(&index).targets().cloned().collect()
                }
                Some(Ok(_)) => continue,
            };
            for t in targets {
                if changed.send(t).await.is_err() {
                    return;
                }
            }
        }
    });
    stores.insert(kind, ar, store);
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, ns: &str, service: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn endpoint_slices_by_service_through_the_index() {
        let stores = Stores::from_objects([
            (SourceKind::EndpointSlice, slice("web-1", "demo", "web")),
            (SourceKind::EndpointSlice, slice("web-2", "demo", "web")),
            (SourceKind::EndpointSlice, slice("web-x", "other", "web")),
            (SourceKind::EndpointSlice, slice("api-1", "demo", "api")),
        ]);
        let names = |ns: &str, svc: &str| -> Vec<String> {
            let mut v: Vec<String> = stores
                .endpoint_slices(ns, svc)
                .unwrap()
                .iter()
                .map(|o| o.name_any())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("demo", "web"), ["web-1", "web-2"]);
        assert_eq!(names("other", "web"), ["web-x"]);
        assert!(names("demo", "nope").is_empty());
        // a removed slice leaves the index
        stores.index_slice(&slice("web-2", "demo", "web"), false);
        assert_eq!(names("demo", "web"), ["web-1"]);
    }
}
