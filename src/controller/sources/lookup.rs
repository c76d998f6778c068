//! An in-memory [`Lookup`]: for tests, examples and the standalone tools.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::core::DynamicObject;

use super::{Lookup, SourceKind, Unavailable};

/// Objects by kind, namespace and name; kinds can be marked as not served.
#[derive(Debug, Clone, Default)]
pub struct MemLookup {
    objects: BTreeMap<SourceKind, BTreeMap<(String, String), Arc<DynamicObject>>>,
    unavailable: BTreeSet<SourceKind>,
}

impl MemLookup {
    pub fn new() -> MemLookup {
        MemLookup::default()
    }

    /// Stores `obj` as a `kind`, keyed by its namespace and name (replacing any).
    pub fn insert(&mut self, kind: SourceKind, obj: DynamicObject) {
        let key = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        self.objects.entry(kind).or_default().insert(key, Arc::new(obj));
    }

    /// Stores `obj` under the kind its `apiVersion` and `kind` name.
    pub fn insert_object(&mut self, obj: DynamicObject) -> Result<SourceKind, String> {
        let types = obj.types.clone().unwrap_or_default();
        let kind = SourceKind::from_type(&types.api_version, &types.kind).ok_or_else(|| {
            format!(
                "apiVersion {:?}, kind {:?} is not a kind traffic sources read",
                types.api_version, types.kind
            )
        })?;
        self.insert(kind, obj);
        Ok(kind)
    }

    /// Removes an object; returns it if it was there.
    pub fn remove(&mut self, kind: SourceKind, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.objects
            .get_mut(&kind)?
            .remove(&(namespace.to_string(), name.to_string()))
    }

    /// Marks `kind` as not served (its CRD is absent): lookups fail with [`Unavailable`].
    pub fn set_unavailable(&mut self, kind: SourceKind) {
        self.unavailable.insert(kind);
    }

    fn check(&self, kind: SourceKind) -> Result<(), Unavailable> {
        if self.unavailable.contains(&kind) {
            Err(Unavailable(kind))
        } else {
            Ok(())
        }
    }
}

impl Lookup for MemLookup {
    fn get(
        &self,
        kind: SourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<DynamicObject>>, Unavailable> {
        self.check(kind)?;
        Ok(self
            .objects
            .get(&kind)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned())
    }

    fn list(
        &self,
        kind: SourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<DynamicObject>>, Unavailable> {
        self.check(kind)?;
        Ok(self
            .objects
            .get(&kind)
            .into_iter()
            .flatten()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, o)| o.clone())
            .collect())
    }
}
