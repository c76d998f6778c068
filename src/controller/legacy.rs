//! Paths users of upstream k8gb depend on: the legacy `k8gb.absa.oss`
//! Gslb with its one-way migration to `k8gb.io` (upstream §2.2–§2.3), and
//! the annotation-driven Ingress (§5.3, deprecated upstream, still live).

use std::sync::Arc;

use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sources::{self, Lookup, SourceKind};
use super::store::{Group, Target, lock};
use super::{Context, Error, MANAGED_BY, reconcile_gslb};
use crate::api;

pub const MIGRATION_REQUESTED: &str = "k8gb.io/migration-requested";
pub const MIGRATED: &str = "k8gb.io/migrated-to-k8gb-io";
pub const FINALIZER: &str = "k8gb.io/legacy-migration-protection";

fn label_true(obj: &DynamicObject, key: &str) -> bool {
    obj.labels().get(key).map(String::as_str) == Some("true")
}

/// Reconciles a legacy Gslb: migration first, else the legacy runtime
/// (the k8gb.io pipeline on a k8gb.io view, policy Any).
pub async fn reconcile(obj: &DynamicObject, ctx: &Context, target: &Target) -> Result<Action, Error> {
    let api = ctx.api(Group::Legacy, &target.namespace);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    if obj.metadata.deletion_timestamp.is_some() {
        // a migrated object's resources survive it (a plain legacy Gslb's
        // Ingress goes with it, as upstream)
        if has_finalizer {
            detach_ingress(ctx, obj, target).await?;
            set_finalizers(&api, obj, false).await?;
        }
        ctx.forget(target).await?;
        return Ok(Action::await_change());
    }
    let requested = label_true(obj, MIGRATION_REQUESTED);
    let migrated = label_true(obj, MIGRATED);
    if !requested && !migrated {
        if has_finalizer {
            set_finalizers(&api, obj, false).await?;
        }
        if lock(&ctx.deprecated).insert(obj.uid().unwrap_or_default()) {
            ctx.event(
                obj,
                Group::Legacy,
                true,
                "LegacyDeprecated",
                format!(
                    "k8gb.absa.oss Gslbs are deprecated: set label {MIGRATION_REQUESTED}=true to migrate to k8gb.io"
                ),
            )
            .await;
        }
        return reconcile_gslb(obj, ctx, target).await;
    }
    if !has_finalizer {
        set_finalizers(&api, obj, true).await?;
    }
    let canonical = ctx.api(Group::Canonical, &target.namespace);
    if migrated {
        detach_ingress(ctx, obj, target).await?;
        ctx.warn_once(
            obj,
            target,
            "LegacyIgnored",
            format!(
                "migrated: edit the k8gb.io Gslb {}/{} instead",
                target.namespace, target.name
            ),
        )
        .await;
        return hand_over(obj, ctx, target, &canonical).await;
    }
    let full = serde_json::to_value(obj).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    let legacy: api::legacy::Gslb = match serde_json::from_value(full) {
        Ok(g) => g,
        // a malformed legacy Gslb cannot be migrated: report it like any other
        Err(_) => return reconcile_gslb(obj, ctx, target).await,
    };
    let existed = super::get_opt(&canonical, &target.name).await?.is_some();
    if !existed {
        let mut g = sources::migrate_legacy(&legacy);
        g.metadata.resource_version = None;
        g.metadata.uid = None;
        g.metadata.owner_references = None;
        g.metadata.finalizers = None;
        g.metadata.managed_fields = None;
        g.metadata.creation_timestamp = None;
        g.metadata.generation = None;
        g.status = None;
        if let Some(labels) = g.metadata.labels.as_mut() {
            labels.remove(MIGRATION_REQUESTED);
            labels.remove(MIGRATED);
        }
        let body = serde_json::to_value(&g).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
        let body: DynamicObject =
            serde_json::from_value(body).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
        match canonical.create(&PostParams::default(), &body).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    detach_ingress(ctx, obj, target).await?;
    api.patch(
        &target.name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {MIGRATED: "true"}}})),
    )
    .await?;
    if existed {
        ctx.event(
            obj,
            Group::Legacy,
            true,
            "LegacyIgnored",
            format!(
                "a k8gb.io Gslb {}/{} already exists; it was kept as is",
                target.namespace, target.name
            ),
        )
        .await;
    } else {
        ctx.event(
            obj,
            Group::Legacy,
            false,
            "LegacyMigrated",
            format!("migrated to k8gb.io Gslb {}/{}", target.namespace, target.name),
        )
        .await;
    }
    lock(&ctx.warned).remove(target);
    hand_over(obj, ctx, target, &canonical).await
}

/// Stops serving the legacy Gslb once its k8gb.io copy is served (Ready),
/// so the hosts never go unanswered during a migration; until then the
/// legacy answers stay and the hand-over is checked again shortly.
async fn hand_over(
    obj: &DynamicObject,
    ctx: &Context,
    target: &Target,
    canonical: &Api<DynamicObject>,
) -> Result<Action, Error> {
    let served = super::get_opt(canonical, &target.name).await?.is_some_and(|c| {
        c.data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    });
    if !served {
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    ctx.forget(target).await?;
    let ready = super::status::Ready::no(
        "Migrated",
        format!(
            "served through the k8gb.io Gslb {}/{}; edit that one",
            target.namespace, target.name
        ),
    );
    super::write_status(obj, ctx, target, &Default::default(), &ready).await?;
    Ok(Action::await_change())
}

/// Adds or removes the migration finalizer.
async fn set_finalizers(api: &Api<DynamicObject>, obj: &DynamicObject, add: bool) -> Result<(), Error> {
    let mut list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if add {
        list.push(FINALIZER.into());
    }
    // with the resourceVersion we read: a concurrent change to the list is
    // a conflict (retried), never silently overwritten
    let patch = json!({"metadata": {"finalizers": list, "resourceVersion": obj.resource_version()}});
    match api
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the legacy Gslb's ownerReference from the Ingress of the same
/// name, so deleting the legacy object keeps the Ingress.
async fn detach_ingress(ctx: &Context, obj: &DynamicObject, target: &Target) -> Result<(), Error> {
    let Some(ar) = ctx.stores.served(SourceKind::Ingress) else {
        return Ok(());
    };
    let Ok(Some(ing)) = ctx
        .stores
        .get(SourceKind::Ingress, &target.namespace, &target.name)
    else {
        return Ok(());
    };
    let uid = obj.uid().unwrap_or_default();
    let owners = ing.owner_references();
    if !owners.iter().any(|o| o.uid == uid) {
        return Ok(());
    }
    let keep: Vec<Value> = owners
        .iter()
        .filter(|o| o.uid != uid)
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &target.namespace, &ar);
    let patch = json!({"metadata": {"ownerReferences": keep, "resourceVersion": ing.resource_version()}});
    match api
        .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the Gslb of every Ingress annotated with `k8gb.io/strategy`
/// (§5.3): created with the Ingress as controller owner, updated when the
/// annotations change. Deleting the Ingress deletes the Gslb (ownerRef).
pub async fn annotated_ingresses(
    ctx: Arc<Context>,
    mut rx: mpsc::UnboundedReceiver<(String, String)>,
    cancel: CancellationToken,
) {
    let mut warned = std::collections::HashSet::new();
    loop {
        let (ns, name) = tokio::select! {
            _ = cancel.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let Ok(Some(ing)) = ctx.stores.get(SourceKind::Ingress, &ns, &name) else {
            continue;
        };
        if !ing.annotations().contains_key("k8gb.io/strategy") {
            continue;
        }
        // created by a Gslb's embedded spec: not an annotation request
        if ing.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1) {
            continue;
        }
        if let Err(e) = sync_annotated(&ctx, &ing, &mut warned).await {
            tracing::warn!(ingress = %format!("{ns}/{name}"), "annotated Ingress: {e}");
        }
    }
}

async fn sync_annotated(
    ctx: &Context,
    ing: &DynamicObject,
    warned: &mut std::collections::HashSet<String>,
) -> Result<(), Error> {
    let ns = ing.namespace().unwrap_or_default();
    let name = ing.name_any();
    let api = ctx.api(Group::Canonical, &ns);
    let existing = super::get_opt(&api, &name).await?;
    let existing_gslb = existing
        .as_ref()
        .and_then(|o| super::parse(o, Group::Canonical).ok());
    let desired = match sources::annotated_ingress_gslb(ing, existing_gslb.as_ref()) {
        Ok(Some(g)) => g,
        Ok(None) => return Ok(()),
        Err(msg) => {
            let key = format!("{ns}/{name}: {msg}");
            if warned.insert(key) {
                tracing::warn!(ingress = %format!("{ns}/{name}"), "cannot create a Gslb from the annotations: {msg}");
                if let Some(ar) = ctx.stores.served(SourceKind::Ingress) {
                    let ev = kube::runtime::events::Event {
                        type_: kube::runtime::events::EventType::Warning,
                        reason: "AnnotationError".into(),
                        note: Some(msg),
                        action: "CreateGslb".into(),
                        secondary: None,
                    };
                    let _ = ctx.recorder.publish(&ev, &ing.object_ref(&ar)).await;
                }
            }
            return Ok(());
        }
    };
    if warned.insert(format!("{ns}/{name}: deprecated")) {
        tracing::warn!(
            ingress = %format!("{ns}/{name}"),
            "annotation-driven Gslbs (k8gb.io/strategy on an Ingress) are deprecated upstream (ADR-0001); prefer a Gslb with resourceRef"
        );
    }
    let mut body = serde_json::to_value(&desired).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    match existing {
        None => {
            if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
                m.remove("uid");
            }
            let obj: DynamicObject =
                serde_json::from_value(body).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    tracing::info!(gslb = %format!("{ns}/{name}"), "created a Gslb from the Ingress annotations")
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(current) => {
            let want_spec = body.get("spec").cloned().unwrap_or(Value::Null);
            let have_spec = current.data.get("spec").cloned().unwrap_or(Value::Null);
            let want_ann = desired.metadata.annotations.clone().unwrap_or_default();
            let ann_ok = want_ann
                .iter()
                .all(|(k, v)| current.annotations().get(k) == Some(v));
            let want_owners = desired.metadata.owner_references.clone().unwrap_or_default();
            let owners_ok = want_owners
                .iter()
                .all(|o| current.owner_references().iter().any(|c| c.uid == o.uid));
            if want_spec == have_spec && ann_ok && owners_ok {
                return Ok(());
            }
            let patch = json!({
                "metadata": {
                    "annotations": want_ann,
                    "ownerReferences": want_owners,
                },
                "spec": super::status::merge_diff(&have_spec, &want_spec),
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(gslb = %format!("{ns}/{name}"), "updated the Gslb from the Ingress annotations");
        }
    }
    Ok(())
}
