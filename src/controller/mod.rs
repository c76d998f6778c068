//! The Kubernetes controller: watches Gslbs (k8gb.io and, while its CRD
//! exists, the legacy k8gb.absa.oss group), resolves each one's traffic
//! source, hosts, Services and exposed addresses from reflector caches
//! (`sources`, pure), sends the result to the engine, and writes the Gslb's
//! status from the engine's answers.
//!
//! Event-driven: a change of any object a Gslb's last resolution read
//! (its source, its Services' EndpointSlices, its Gateway…) reconciles that
//! Gslb at once through the dependency index; so does a change of its
//! answers in the engine (a peer came or went). RECONCILE_REQUEUE_SECONDS
//! is only a safety net.
//!
//! Gslbs are watched as untyped objects and parsed in the reconcile, so one
//! malformed Gslb gets a `Ready=False InvalidSpec` condition instead of
//! breaking the list-watch of all the others.

pub mod cluster_ips;
pub mod legacy;
pub mod readiness;
pub mod sources;
pub mod status;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::Config;
use crate::core::health::{Health, Policy};
use crate::core::names;
use crate::engine::{Event, KubeChange, KubeGslb};
use crate::metrics::Metrics;
use sources::{Dependency, Lookup, SourceKind};
use status::{Outcome, Ready};
use store::{DepIndex, Group, Stores, Target, lock};

/// Label on Ingresses created from an embedded spec.
pub const MANAGED_BY: (&str, &str) = ("app.k8gb.io/managed-by", "gslb");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the engine did not take the update (stopped or overloaded)")]
    EngineStopped,
    #[error(
        "the k8gb.io Gslb CRD is not installed (apply chart/k8gb/crds or `k8gb crd | kubectl apply -f -`)"
    )]
    CrdMissing,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub cfg: Arc<Config>,
    pub stores: Stores,
    pub engine: mpsc::Sender<Event>,
    pub recorder: Recorder,
    pub index: Arc<Mutex<DepIndex>>,
    pub metrics: Arc<Metrics>,
    pub canonical: ApiResource,
    pub legacy: Option<ApiResource>,
    /// The last warning event per Gslb and reason: one event per distinct failure,
    /// not one per requeue.
    warned: Mutex<HashMap<Target, std::collections::BTreeMap<String, String>>>,
    /// The status we last wrote, and the resourceVersion of the object we
    /// wrote it over: a reconcile that still sees that older object
    /// compares with what we wrote instead of re-patching.
    written: Mutex<HashMap<Target, (Option<String>, Value)>>,
    /// The last resolution that succeeded: a transient failure keeps its
    /// hosts served (with this cluster's targets withdrawn).
    last_good: Mutex<HashMap<Target, (String, KubeGslb)>>,
    /// The Gslb caches of each group (empty in tests that call `reconcile`
    /// directly): a reconcile that finishes after its Gslb was deleted must
    /// not bring it back.
    pub gslb_readers: Vec<(Group, Store<DynamicObject>)>,
    /// Legacy Gslbs (by uid) already told they are deprecated.
    deprecated: Mutex<std::collections::HashSet<String>>,
    /// Readiness: the first list of Gslbs, until all of it is reconciled.
    pub initial: Mutex<readiness::InitialSync>,
}

impl Context {
    pub fn new(
        client: Client,
        cfg: Arc<Config>,
        stores: Stores,
        engine: mpsc::Sender<Event>,
        metrics: Arc<Metrics>,
        legacy: Option<ApiResource>,
    ) -> Context {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "k8gb".into(),
                instance,
            },
        );
        Context {
            client,
            cfg,
            stores,
            engine,
            recorder,
            index: Arc::new(Mutex::new(DepIndex::default())),
            metrics,
            canonical: ApiResource::erase::<api::Gslb>(&()),
            legacy,
            warned: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
            gslb_readers: Vec::new(),
            deprecated: Mutex::new(Default::default()),
            initial: Mutex::new(readiness::InitialSync::done()),
        }
    }

    fn ar(&self, group: Group) -> &ApiResource {
        match (group, &self.legacy) {
            (Group::Legacy, Some(ar)) => ar,
            _ => &self.canonical,
        }
    }

    fn api(&self, group: Group, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, self.ar(group))
    }

    fn requeue(&self) -> Action {
        match self.cfg.reconcile_requeue_seconds {
            0 => Action::await_change(),
            s => Action::requeue(Duration::from_secs(s)),
        }
    }

    /// Publishes an event about `obj`; a failure to publish is only logged.
    async fn event(&self, obj: &DynamicObject, group: Group, warning: bool, reason: &str, note: String) {
        let ev = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(self.ar(group))).await {
            tracing::debug!("cannot publish event {reason}: {e}");
        }
    }

    /// A warning event, unless the same one was the last for this Gslb.
    /// True when it was new.
    async fn warn_once(&self, obj: &DynamicObject, target: &Target, reason: &str, note: String) -> bool {
        let previous = lock(&self.warned)
            .entry(target.clone())
            .or_default()
            .insert(reason.to_owned(), note.clone());
        if previous.as_ref() == Some(&note) {
            return false;
        }
        self.event(obj, target.group, true, reason, note).await;
        true
    }

    async fn send(&self, change: KubeChange) -> Result<(), Error> {
        self.engine
            .send(Event::Kube(change))
            .await
            .map_err(|_| Error::EngineStopped)
    }

    /// Was `obj` deleted (or replaced by a new object of the same name)
    /// while it was being reconciled?
    fn gone(&self, obj: &DynamicObject, group: Group) -> bool {
        let Some((_, reader)) = self.gslb_readers.iter().find(|(g, _)| *g == group) else {
            return false;
        };
        let key = ObjectRef::new_with(&obj.name_any(), self.ar(group).clone())
            .within(&obj.namespace().unwrap_or_default());
        reader.get(&key).is_none_or(|cur| cur.uid() != obj.uid())
    }

    /// Drops what is remembered about Gslbs that no longer exist.
    fn prune(&self, keep: &BTreeSet<String>) {
        let alive = |t: &Target| keep.contains(&engine_key(t));
        lock(&self.warned).retain(|t, _| alive(t));
        lock(&self.written).retain(|t, _| alive(t));
        lock(&self.last_good).retain(|t, _| alive(t));
        let mut index = lock(&self.index);
        let dead: Vec<Target> = index.targets().filter(|t| !alive(t)).cloned().collect();
        for t in dead {
            index.remove(&t);
        }
    }

    /// Forgets a Gslb that is gone.
    async fn forget(&self, target: &Target) -> Result<(), Error> {
        lock(&self.index).remove(target);
        lock(&self.warned).remove(target);
        lock(&self.written).remove(target);
        lock(&self.last_good).remove(target);
        self.send(KubeChange::Remove(engine_key(target))).await
    }
}

/// GET that maps 404 to `None` by code (kube's `get_opt` wants the exact
/// `NotFound` reason, which API emulators do not always send).
pub async fn get_opt(api: &Api<DynamicObject>, name: &str) -> Result<Option<DynamicObject>, kube::Error> {
    match api.get(name).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The engine's key of a Gslb.
pub fn engine_key(t: &Target) -> String {
    let group = match t.group {
        Group::Canonical => "k8gb.io",
        Group::Legacy => "k8gb.absa.oss",
    };
    format!("{group}/{}/{}", t.namespace, t.name)
}

fn target_of_key(key: &str) -> Option<Target> {
    let mut it = key.splitn(3, '/');
    let group = match it.next()? {
        "k8gb.io" => Group::Canonical,
        "k8gb.absa.oss" => Group::Legacy,
        _ => return None,
    };
    Some(Target {
        group,
        namespace: it.next()?.to_owned(),
        name: it.next()?.to_owned(),
    })
}

fn target_of(obj: &DynamicObject, group: Group) -> Target {
    Target {
        group,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

fn group_of(obj: &DynamicObject) -> Group {
    match obj.types.as_ref().map(|t| t.api_version.as_str()) {
        Some(v) if v.starts_with("k8gb.absa.oss/") => Group::Legacy,
        _ => Group::Canonical,
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Reconciles one Gslb of either group.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let group = group_of(&obj);
    let target = target_of(&obj, group);
    let result = match group {
        Group::Legacy => legacy::reconcile(&obj, &ctx, &target).await,
        Group::Canonical => reconcile_gslb(&obj, &ctx, &target).await,
    };
    if result.is_err() {
        ctx.metrics.gslb_error(&target.namespace, &target.name);
    }
    result
}

/// API errors: retried after a short, jittered delay.
pub fn error_policy(obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(gslb = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), "reconcile failed, retrying: {err}");
    let jitter = rand::random::<u64>() % 2000;
    Action::requeue(Duration::from_millis(3000 + jitter))
}

/// The reconcile of one Gslb (k8gb.io, or a legacy one seen as k8gb.io).
pub async fn reconcile_gslb(obj: &DynamicObject, ctx: &Context, target: &Target) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        ctx.forget(target).await?;
        return Ok(Action::await_change());
    }
    let gslb = match parse(obj, target.group) {
        Ok(g) => g,
        Err(msg) => {
            let ready = Ready::no("InvalidSpec", msg);
            return fail(obj, ctx, target, ready, Vec::new(), Action::await_change()).await;
        }
    };
    let strategy = match gslb.spec.strategy.validate() {
        Ok(s) => s,
        Err(e) => {
            let ready = Ready::no("InvalidStrategy", format!("spec.strategy: {e}"));
            return fail(obj, ctx, target, ready, Vec::new(), Action::await_change()).await;
        }
    };
    let embedded = gslb.spec.resource_ref.as_ref().is_none_or(|r| r.is_empty());
    if embedded
        && gslb.spec.ingress.is_some()
        && let Some(ready) = ensure_ingress(obj, &gslb, ctx, target).await?
    {
        // the conflicting Ingress going away must reconcile this Gslb
        let dep = Dependency::Object {
            kind: SourceKind::Ingress,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        };
        return fail(obj, ctx, target, ready, vec![dep], ctx.requeue()).await;
    }
    let resolved = match sources::resolve(&ctx.stores, &gslb) {
        Ok(r) => r,
        Err(e) => {
            // a kind RBAC keeps from us: say so, not "is its CRD installed?"
            let denied = match &e.error {
                sources::ResolveError::KindNotServed(kind) => ctx
                    .stores
                    .denied(*kind)
                    .map(|d| unreadable_condition(*kind, Some(&d), "the source cannot be read")),
                _ => None,
            };
            let ready = denied.unwrap_or_else(|| Ready::no(e.reason(), e.error.to_string()));
            let deps = e.depends;
            return fail(obj, ctx, target, ready, deps, ctx.requeue()).await;
        }
    };
    // includes each backing Service and its EndpointSlices
    let deps = resolved.depends.clone();
    lock(&ctx.index).set(target, deps);

    // hosts outside every served zone are reported, not served
    let zones: Vec<&str> = ctx.cfg.zones.iter().map(|z| z.name.as_str()).collect();
    let in_zone = |h: &str| names::best_zone(h, zones.iter().copied()).is_some();
    let outside: Vec<String> = resolved.hosts.iter().filter(|h| !in_zone(h)).cloned().collect();
    let servers: Vec<_> = resolved
        .servers
        .iter()
        .filter(|(h, _)| in_zone(h))
        .cloned()
        .collect();
    let policy: Policy = gslb.spec.service_health_policy.into();
    let health: std::collections::BTreeMap<String, Health> = servers
        .iter()
        .map(|(h, services)| (h.clone(), sources::host_health(&ctx.stores, policy, services)))
        .collect();

    // health reads Services and EndpointSlices: when one of them cannot be
    // read every host counts as Unhealthy (NotFound), and the condition says why
    let health_problem = if servers.is_empty() {
        None
    } else {
        health_unreadable(&ctx.stores)
    };
    if let Some(p) = &health_problem
        && ctx.warn_once(obj, target, &p.reason, p.message.clone()).await
    {
        tracing::warn!(gslb = %format!("{}/{}", target.namespace, target.name), reason = %p.reason, "{}", p.message);
    }

    // exposed addresses (§5.2); hostnames go through the edge DNS
    let mut problem: Option<Ready> = None;
    let exposed: Vec<IpAddr> = match sources::exposed_plan(
        obj.annotations(),
        &ctx.cfg.cluster_exposed_ips,
        &resolved.addresses,
    ) {
        Err(e) => {
            problem = Some(Ready::no(e.reason(), e.to_string()));
            Vec::new()
        }
        Ok(plan) if plan.resolve.is_empty() => plan.ips,
        Ok(plan) => match crate::peer::resolve_via_edge(&ctx.cfg, &plan.resolve).await {
            Ok(mut ips) => {
                ips.extend(plan.ips);
                ips
            }
            Err(e) => {
                ctx.warn_once(obj, target, "ExposedIPResolutionError", e.clone())
                    .await;
                problem = Some(Ready::no("ExposedAddressesUnresolved", e));
                plan.ips
            }
        },
    };

    // resolvers rotate answers: a stable order keeps the status stable
    let mut exposed = exposed;
    exposed.sort();
    exposed.dedup();
    let entry = KubeGslb {
        key: engine_key(target),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        hosts: servers.iter().map(|(h, _)| h.clone()).collect(),
        strategy,
        health: health.clone(),
        exposed: exposed.clone(),
    };
    lock(&ctx.last_good).insert(target.clone(), (obj.uid().unwrap_or_default(), entry.clone()));
    let report = upsert(ctx, entry).await?;
    if ctx.gone(obj, target.group) {
        ctx.forget(target).await?;
        return Ok(Action::await_change());
    }

    let ready = if servers.is_empty() {
        Ready::no(
            "HostOutsideZones",
            format!(
                "no host is inside a served zone ({}): {}",
                zones.join(", "),
                resolved.hosts.join(", ")
            ),
        )
    } else if let Some(p) = health_problem.or(problem) {
        p
    } else if exposed.is_empty() {
        Ready::no(
            "NoExposedAddresses",
            "the traffic source has no address yet (load balancer pending?); peers' targets are served",
        )
    } else {
        let mut msg = format!(
            "serving {} host(s), {} local address(es)",
            servers.len(),
            exposed.len()
        );
        if !outside.is_empty() {
            msg.push_str(&format!(
                "; outside every zone, not served: {}",
                outside.join(", ")
            ));
        }
        Ready::yes(msg)
    };
    if !outside.is_empty() {
        ctx.warn_once(
            obj,
            target,
            "HostOutsideZones",
            format!("not served, outside every zone: {}", outside.join(", ")),
        )
        .await;
    } else if ready.ok {
        lock(&ctx.warned).remove(target);
    }
    let outcome = Outcome {
        hosts: resolved.hosts.clone(),
        servers,
        health,
        exposed,
        report,
    };
    write_status(obj, ctx, target, &outcome, &ready).await?;
    Ok(ctx.requeue())
}

/// The condition when health cannot be read (the Services or EndpointSlices
/// are not cached), `None` when it can: `Forbidden` with the API server's
/// refusal (it names the resource and the verb) when RBAC is the cause, else
/// `KindNotServed`. Without it a missing permission looks like an outage
/// of the app (every host Unhealthy, Ready=True).
pub(crate) fn health_unreadable(stores: &Stores) -> Option<Ready> {
    [SourceKind::Service, SourceKind::EndpointSlice]
        .into_iter()
        .filter(|k| stores.served(*k).is_none())
        .map(|k| {
            unreadable_condition(
                k,
                stores.denied(k).as_deref(),
                "health cannot be read, every host counts as not healthy here",
            )
        })
        .next()
}

fn unreadable_condition(kind: SourceKind, denied: Option<&str>, consequence: &str) -> Ready {
    let resource = kind.resource();
    match denied {
        Some(refusal) => Ready::no(
            "Forbidden",
            format!(
                "{consequence}: no RBAC permission to list {resource} (the ClusterRole must allow get, list, watch): {refusal}"
            ),
        ),
        None => Ready::no(
            "KindNotServed",
            format!("{consequence}: {resource} is not served by this cluster"),
        ),
    }
}

/// Sends a resolved Gslb to the engine and waits for its answers.
async fn upsert(ctx: &Context, entry: KubeGslb) -> Result<Option<crate::metrics::GslbReport>, Error> {
    let (tx, rx) = oneshot::channel();
    ctx.send(KubeChange::Upsert(Box::new(entry), Some(tx))).await?;
    // no reply: retry the reconcile rather than write a status without answers
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(report)) => Ok(Some(report)),
        _ => Err(Error::EngineStopped),
    }
}

/// A Gslb that cannot be served as asked: condition, event, metrics. Hosts
/// served before keep being served with this cluster's targets withdrawn,
/// so peers' targets still answer.
async fn fail(
    obj: &DynamicObject,
    ctx: &Context,
    target: &Target,
    ready: Ready,
    deps: Vec<Dependency>,
    action: Action,
) -> Result<Action, Error> {
    ctx.metrics.gslb_error(&target.namespace, &target.name);
    lock(&ctx.index).set(target, deps);
    let gslb = format!("{}/{}", target.namespace, target.name);
    // at warn once per distinct failure (with its event), then at debug
    if ctx
        .warn_once(obj, target, &ready.reason, ready.message.clone())
        .await
    {
        tracing::warn!(gslb = %gslb, reason = %ready.reason, "{}", ready.message);
    } else {
        tracing::debug!(gslb = %gslb, reason = %ready.reason, "{}", ready.message);
    }
    let uid = obj.uid().unwrap_or_default();
    let previous = lock(&ctx.last_good)
        .get(target)
        .filter(|(u, _)| *u == uid)
        .map(|(_, g)| g.clone());
    let report = match previous {
        Some(mut g) => {
            g.health.clear();
            g.exposed.clear();
            let r = upsert(ctx, g).await?;
            if ctx.gone(obj, target.group) {
                ctx.forget(target).await?;
                return Ok(Action::await_change());
            }
            r
        }
        None => {
            ctx.send(KubeChange::Remove(engine_key(target))).await?;
            None
        }
    };
    let outcome = Outcome {
        report,
        ..Outcome::default()
    };
    write_status(obj, ctx, target, &outcome, &ready).await?;
    Ok(action)
}

/// Patches the status when it differs from the stored one.
pub(crate) async fn write_status(
    obj: &DynamicObject,
    ctx: &Context,
    target: &Target,
    outcome: &Outcome,
    ready: &Ready,
) -> Result<(), Error> {
    let want = status::desired(ctx.cfg.geo_tag.as_str(), outcome, ready, obj.metadata.generation);
    let rv = obj.resource_version();
    let stored = obj.data.get("status").cloned();
    let current = match lock(&ctx.written).get(target) {
        Some((seen_rv, written)) if *seen_rv == rv => Some(written.clone()),
        _ => stored,
    };
    let Some(patch) = status::patch(current.as_ref(), want, &now()) else {
        return Ok(());
    };
    let api = ctx.api(target.group, &target.namespace);
    match api
        .patch_status(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => {
            let after = updated.data.get("status").cloned().unwrap_or(Value::Null);
            lock(&ctx.written).insert(target.clone(), (rv, after));
            Ok(())
        }
        // deleted meanwhile: its watch event follows
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Parses the Gslb out of the untyped object; the error names the field.
pub fn parse(obj: &DynamicObject, group: Group) -> Result<api::Gslb, String> {
    let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
    let spec: api::GslbSpec = match group {
        Group::Canonical => serde_path_to_error::deserialize(spec).map_err(|e| format!("spec.{e}"))?,
        Group::Legacy => serde_path_to_error::deserialize::<_, api::legacy::GslbSpec>(spec)
            .map_err(|e| format!("spec.{e}"))?
            .into(),
    };
    Ok(api::Gslb {
        metadata: obj.metadata.clone(),
        spec,
        status: None,
    })
}

/// The Ingress an embedded spec asks for, as JSON (upstream's `backend`
/// is networking/v1's `defaultBackend`).
fn embedded_ingress_spec(ingress: &api::IngressSpec) -> Value {
    let mut spec = serde_json::to_value(ingress).unwrap_or(Value::Null);
    if let Some(m) = spec.as_object_mut()
        && let Some(b) = m.remove("backend")
    {
        m.insert("defaultBackend".into(), b);
    }
    spec
}

/// Creates or updates the Ingress of an embedded Gslb. `Some(ready)` when
/// an Ingress of that name exists and belongs to something else.
async fn ensure_ingress(
    obj: &DynamicObject,
    gslb: &api::Gslb,
    ctx: &Context,
    target: &Target,
) -> Result<Option<Ready>, Error> {
    let Some(ar) = ctx.stores.served(SourceKind::Ingress) else {
        let kind = SourceKind::Ingress;
        return Ok(Some(match ctx.stores.denied(kind) {
            Some(d) => unreadable_condition(kind, Some(&d), "the embedded Ingress cannot be kept"),
            None => Ready::no(
                "KindNotServed",
                "networking.k8s.io/v1 Ingress is not served by this cluster",
            ),
        }));
    };
    let Some(ingress) = &gslb.spec.ingress else {
        return Ok(None);
    };
    let spec = embedded_ingress_spec(ingress);
    let uid = obj.uid().unwrap_or_default();
    let owner = json!({
        "apiVersion": ctx.ar(target.group).api_version,
        "kind": "Gslb",
        "name": target.name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    });
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &target.namespace, &ar);
    let existing = ctx
        .stores
        .get(SourceKind::Ingress, &target.namespace, &target.name)
        .ok()
        .flatten();
    let Some(existing) = existing else {
        let body = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": target.name,
                "namespace": target.namespace,
                "labels": { MANAGED_BY.0: MANAGED_BY.1 },
                "ownerReferences": [owner],
            },
            "spec": spec,
        });
        let body: DynamicObject =
            serde_json::from_value(body).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
        match api.create(&PostParams::default(), &body).await {
            Ok(_) => {
                tracing::info!(ingress = %format!("{}/{}", target.namespace, target.name), "created the embedded Ingress");
            }
            // the cache is behind: the next event reconciles again
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(None);
    };
    let owners = existing.owner_references();
    if let Some(other) = owners.iter().find(|o| o.controller == Some(true) && o.uid != uid) {
        return Ok(Some(Ready::no(
            "IngressConflict",
            format!(
                "Ingress {}/{} exists and is controlled by {} {}; rename the Gslb or remove that Ingress",
                target.namespace, target.name, other.kind, other.name
            ),
        )));
    }
    let mut current_spec = existing.data.get("spec").cloned().unwrap_or(Value::Null);
    if spec.get("ingressClassName").is_none()
        && let Some(m) = current_spec.as_object_mut()
    {
        m.remove("ingressClassName");
    }
    let labelled = existing.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
    let owned = owners.iter().any(|o| o.uid == uid);
    if current_spec == spec && labelled && owned {
        return Ok(None);
    }
    let mut refs: Vec<Value> = owners
        .iter()
        .filter(|o| o.uid != uid)
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    refs.push(owner);
    let mut spec_patch = status::merge_diff(&current_spec, &spec);
    // an ingressClassName the Gslb leaves open may be set by admission
    // (DefaultIngressClass): keep it rather than unbinding the Ingress
    if spec.get("ingressClassName").is_none()
        && let Some(m) = spec_patch.as_object_mut()
    {
        m.remove("ingressClassName");
    }
    let patch = json!({
        "metadata": {
            "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            "ownerReferences": refs,
            // the owner list was read from the cache: conflict if it moved
            "resourceVersion": existing.resource_version(),
        },
        "spec": spec_patch,
    });
    api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(ingress = %format!("{}/{}", target.namespace, target.name), "updated the embedded Ingress");
    Ok(None)
}

/// The channels and flags the controller works with.
pub struct Io {
    /// Events to the engine.
    pub engine: mpsc::Sender<Event>,
    /// Engine keys of Gslbs whose answers changed without a reconcile.
    pub answers: mpsc::Receiver<String>,
    /// This cluster's DNS addresses as found in Kubernetes.
    pub cluster_ips: tokio::sync::watch::Sender<Vec<IpAddr>>,
    /// Set once the first complete list of Gslbs has been applied.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs the controller until `cancel`. Transient API errors at start
/// (discovery, the first lists) are retried with backoff; a missing k8gb.io
/// Gslb CRD is an error.
pub async fn run(
    client: Client,
    cfg: Arc<Config>,
    io: Io,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let Io {
        engine,
        answers,
        cluster_ips,
        ready,
    } = io;
    let (changed_tx, changed_rx) = mpsc::channel::<Target>(1024);
    let (ingress_tx, ingress_rx) = mpsc::unbounded_channel::<(String, String)>();
    let canonical = ApiResource::erase::<api::Gslb>(&());
    let legacy_ar = ApiResource::erase::<api::legacy::Gslb>(&());
    let index = Arc::new(Mutex::new(DepIndex::default()));
    let mut delay = Duration::from_millis(500);
    let (legacy, stores) = loop {
        let attempt = async {
            if !store::is_served(&client, &canonical).await? {
                return Err(Error::CrdMissing);
            }
            let legacy = store::is_served(&client, &legacy_ar)
                .await?
                .then(|| legacy_ar.clone());
            let stores = store::start(
                &client,
                index.clone(),
                changed_tx.clone(),
                Some(ingress_tx.clone()),
                &cancel,
            )
            .await?;
            Ok((legacy, stores))
        };
        match attempt.await {
            Ok(v) => break v,
            Err(Error::CrdMissing) => return Err(Error::CrdMissing),
            Err(e) => {
                tracing::warn!("Kubernetes API not usable yet, retrying in {delay:?}: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let mut ctx = Context::new(client.clone(), cfg, stores, engine, metrics, legacy.clone());
    ctx.index = index;
    let groups = std::iter::once(Group::Canonical).chain(legacy.as_ref().map(|_| Group::Legacy));
    ctx.initial = Mutex::new(readiness::InitialSync::new(groups, ready));
    let (c_stream, c_reader) = gslb_stream(&client, &ctx.canonical);
    let legacy_parts = legacy.as_ref().map(|ar| gslb_stream(&client, ar));
    ctx.gslb_readers.push((Group::Canonical, c_reader.clone()));
    if let Some((_, r)) = &legacy_parts {
        ctx.gslb_readers.push((Group::Legacy, r.clone()));
    }
    let ctx = Arc::new(ctx);
    // consumers first: the caches' hooks never wait on them
    tokio::spawn(legacy::annotated_ingresses(
        ctx.clone(),
        ingress_rx,
        cancel.clone(),
    ));
    tokio::spawn(cluster_ips::run(
        ctx.cfg.clone(),
        Arc::new(ctx.stores.clone()),
        ctx.engine.clone(),
        cluster_ips,
        Duration::from_secs(2),
        cancel.clone(),
    ));
    let (canon_tx, canon_rx) = mpsc::unbounded_channel::<ObjectRef<DynamicObject>>();
    let (legacy_tx, legacy_rx) = mpsc::unbounded_channel::<ObjectRef<DynamicObject>>();
    tokio::spawn(route_triggers(
        ctx.clone(),
        changed_rx,
        answers,
        canon_tx.clone(),
        legacy_tx.clone(),
        cancel.clone(),
    ));
    if !ctx.stores.wait_ready(Duration::from_secs(30)).await {
        tracing::warn!("some caches are not filled after 30 s (RBAC?); reconciling anyway");
    }

    let mut runs = vec![controller_run(
        ctx.clone(),
        Group::Canonical,
        c_stream,
        c_reader,
        canon_rx,
        canon_tx,
        cancel.clone(),
    )];
    if let Some((s, r)) = legacy_parts {
        runs.push(controller_run(
            ctx.clone(),
            Group::Legacy,
            s,
            r,
            legacy_rx,
            legacy_tx,
            cancel.clone(),
        ));
    }
    futures::future::join_all(runs).await;
    Ok(())
}

pub type GslbEvents =
    futures::stream::BoxStream<'static, Result<watcher::Event<DynamicObject>, watcher::Error>>;

/// The Gslb list-watch of one group and its cache.
fn gslb_stream(client: &Client, ar: &ApiResource) -> (GslbEvents, Store<DynamicObject>) {
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let stream = watcher(api, watcher::Config::default())
        .backoff(store::watch_backoff())
        .modify(store::trim)
        .reflect(writer)
        .boxed();
    (stream, reader)
}

/// Every Gslb key the caches hold, in both groups.
fn cached_keys(ctx: &Context) -> BTreeSet<String> {
    ctx.gslb_readers
        .iter()
        .flat_map(|(g, r)| r.state().into_iter().map(move |o| engine_key(&target_of(&o, *g))))
        .collect()
}

/// One group's Gslb controller over a (reflected) watch stream: deletes
/// and re-lists go to the engine, every object to `reconcile`.
pub async fn controller_run(
    ctx: Arc<Context>,
    group: Group,
    events: GslbEvents,
    reader: Store<DynamicObject>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<DynamicObject>>,
    retrigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    cancel: CancellationToken,
) {
    let ar = ctx.ar(group).clone();
    let c2 = ctx.clone();
    let r2 = reader.clone();
    // deletions and re-lists reach the engine here; the controller only
    // sees objects that exist
    let applied = events
        .then(move |ev| {
            let ctx = c2.clone();
            let reader = r2.clone();
            let retrigger = retrigger.clone();
            async move {
                match &ev {
                    Ok(watcher::Event::Delete(o)) => {
                        let _ = ctx.forget(&target_of(o, group)).await;
                    }
                    Ok(watcher::Event::InitDone) => {
                        // the cache was swapped in just now: Gslbs gone
                        // meanwhile leave, every present one is reconciled
                        // against it (the InitApply triggers saw the old one)
                        lock(&ctx.initial).listed(group, reader.state().iter().map(|o| target_of(o, group)));
                        let keys = cached_keys(&ctx);
                        ctx.prune(&keys);
                        let _ = ctx.send(KubeChange::Retain(keys)).await;
                        for o in reader.state() {
                            let r = ObjectRef::new_with(&o.name_any(), ctx.ar(group).clone())
                                .within(&o.namespace().unwrap_or_default());
                            let _ = retrigger.send(r);
                        }
                    }
                    _ => {}
                }
                ev
            }
        })
        .applied_objects();
    let triggers = tokio_stream_from(triggers);
    Controller::for_stream_with(applied, reader, ar)
        .reconcile_on(triggers)
        .with_config(kube::runtime::controller::Config::default().concurrency(8))
        .graceful_shutdown_on(async move { cancel.cancelled().await })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| {
            use kube::runtime::controller::Error as CErr;
            let done = match &r {
                Ok((o, _)) => Some(o),
                Err(CErr::ReconcilerFailed(_, o)) | Err(CErr::ObjectNotFound(o)) => Some(&**o),
                Err(_) => None,
            };
            if let Some(o) = done {
                let t = Target {
                    group,
                    namespace: o.namespace.clone().unwrap_or_default(),
                    name: o.name.clone(),
                };
                lock(&ctx.initial).reconciled(&t);
            }
            if let Err(e) = r {
                tracing::debug!("controller: {e}");
            }
            futures::future::ready(())
        })
        .await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Sends each Gslb to reconcile to its group's controller.
async fn route_triggers(
    ctx: Arc<Context>,
    mut changed: mpsc::Receiver<Target>,
    mut answers: mpsc::Receiver<String>,
    canon: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    legacy: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    cancel: CancellationToken,
) {
    let mut answers_open = true;
    loop {
        let t = tokio::select! {
            _ = cancel.cancelled() => return,
            t = changed.recv() => match t {
                Some(t) => t,
                None => return,
            },
            k = answers.recv(), if answers_open => match k {
                Some(k) => match target_of_key(&k) {
                    Some(t) => t,
                    None => continue,
                },
                None => {
                    answers_open = false;
                    continue;
                }
            },
        };
        let r = ObjectRef::new_with(&t.name, ctx.ar(t.group).clone()).within(&t.namespace);
        let _ = match t.group {
            Group::Canonical => canon.send(r),
            Group::Legacy => legacy.send(r),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_endpoint_slices_are_reported_with_the_refusal() {
        // every kind cached: nothing to say
        let stores = Stores::from_objects([]);
        assert_eq!(health_unreadable(&stores), None);
        // the service account may not list EndpointSlices: discovery left
        // them out and kept the API server's refusal
        let refusal = r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:k8gb:k8gb" cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope"#;
        stores.remove_kind(SourceKind::EndpointSlice);
        stores.set_denied(SourceKind::EndpointSlice, Some(refusal.into()));
        let r = health_unreadable(&stores).unwrap();
        assert_eq!((r.ok, r.reason.as_str()), (false, "Forbidden"));
        assert!(
            r.message.contains("list endpointslices.discovery.k8s.io")
                && r.message.contains("get, list, watch")
                && r.message.ends_with(refusal),
            "{}",
            r.message
        );
        // not served at all (no refusal recorded)
        stores.set_denied(SourceKind::EndpointSlice, None);
        let r = health_unreadable(&stores).unwrap();
        assert_eq!((r.ok, r.reason.as_str()), (false, "KindNotServed"));
        assert!(
            r.message
                .contains("endpointslices.discovery.k8s.io is not served"),
            "{}",
            r.message
        );
        assert_eq!(SourceKind::Service.resource(), "services");
    }
}
