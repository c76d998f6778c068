//! Traffic sources (upstream §5): from a Gslb and read access to the
//! controller's caches, the hosts, the Services behind each host, the
//! addresses the source publishes and everything that was read (so a change
//! to any of it triggers a new reconcile).
//!
//! Pure: no client, no async, no I/O. The controller implements [`Lookup`]
//! over its reflector stores; tests use [`MemLookup`]. Objects are kube's
//! [`DynamicObject`], read through small serde views that ignore unknown
//! fields and turn a missing or oddly typed field into
//! [`ResolveError::Malformed`] instead of a panic.
//!
//! User documentation: `docs/sources.md`.

mod annotated;
mod exposed;
mod health;
mod kinds;
mod lookup;
mod selector;
mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

pub use annotated::{annotated_ingress_gslb, migrate_legacy};
pub use exposed::{ExposedPlan, exposed_plan};
pub use health::{host_health, service_health};
pub use lookup::MemLookup;
pub use selector::Selector;

/// Gslb annotation: the host of a `Service`, `TCPRoute` or `UDPRoute` source.
pub const ANNOTATION_HOSTNAME: &str = "k8gb.io/hostname";
/// Gslb (or annotated Ingress) annotation: comma-separated IPs that replace the discovered ones.
pub const ANNOTATION_EXPOSED_IPS: &str = "k8gb.io/exposed-ip-addresses";
/// Gslb annotation: comma-separated hostnames resolved through the edge DNS; beats everything.
pub const ANNOTATION_EXPOSED_HOSTNAMES: &str = "k8gb.io/exposed-hostnames";
/// Ingress annotation: asks for a Gslb with this strategy (§5.3, deprecated upstream).
pub const ANNOTATION_STRATEGY: &str = "k8gb.io/strategy";
/// Ingress annotation: the failover primary of the Gslb asked for.
pub const ANNOTATION_PRIMARY_GEOTAG: &str = "k8gb.io/primary-geotag";
/// Ingress annotation: the TTL of the Gslb asked for.
pub const ANNOTATION_DNS_TTL: &str = "k8gb.io/dns-ttl-seconds";
/// EndpointSlice label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const ISTIO_GROUP: &str = "networking.istio.io";

/// Kinds the controller reads: traffic sources and what they depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Ingress,
    Service,
    EndpointSlice,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    UdpRoute,
    /// Gateway API `Gateway` (`gateway.networking.k8s.io`).
    Gateway,
    VirtualService,
    /// Istio `Gateway` (`networking.istio.io`).
    IstioGateway,
}

impl SourceKind {
    pub const ALL: [SourceKind; 11] = [
        SourceKind::Ingress,
        SourceKind::Service,
        SourceKind::EndpointSlice,
        SourceKind::HttpRoute,
        SourceKind::GrpcRoute,
        SourceKind::TlsRoute,
        SourceKind::TcpRoute,
        SourceKind::UdpRoute,
        SourceKind::Gateway,
        SourceKind::VirtualService,
        SourceKind::IstioGateway,
    ];

    /// The Kubernetes kind (as in `kind:`), without the group.
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::Ingress => "Ingress",
            SourceKind::Service => "Service",
            SourceKind::EndpointSlice => "EndpointSlice",
            SourceKind::HttpRoute => "HTTPRoute",
            SourceKind::GrpcRoute => "GRPCRoute",
            SourceKind::TlsRoute => "TLSRoute",
            SourceKind::TcpRoute => "TCPRoute",
            SourceKind::UdpRoute => "UDPRoute",
            SourceKind::Gateway | SourceKind::IstioGateway => "Gateway",
            SourceKind::VirtualService => "VirtualService",
        }
    }

    /// A name for messages: the kind, with the group where two kinds share a name.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::IstioGateway => "Gateway (networking.istio.io)",
            other => other.kind(),
        }
    }

    /// The resource as RBAC rules and kubectl name it: `endpointslices.discovery.k8s.io`
    /// (`services` for the core group).
    pub fn resource(self) -> String {
        match self.group_versions_plural() {
            ("", _, plural) => plural.to_string(),
            (group, _, plural) => format!("{plural}.{group}"),
        }
    }

    fn group_versions_plural(self) -> (&'static str, &'static [&'static str], &'static str) {
        match self {
            SourceKind::Ingress => ("networking.k8s.io", &["v1"], "ingresses"),
            SourceKind::Service => ("", &["v1"], "services"),
            SourceKind::EndpointSlice => ("discovery.k8s.io", &["v1"], "endpointslices"),
            SourceKind::HttpRoute => (GATEWAY_GROUP, &["v1"], "httproutes"),
            SourceKind::GrpcRoute => (GATEWAY_GROUP, &["v1"], "grpcroutes"),
            SourceKind::TlsRoute => (GATEWAY_GROUP, &["v1", "v1alpha3", "v1alpha2"], "tlsroutes"),
            SourceKind::TcpRoute => (GATEWAY_GROUP, &["v1alpha2"], "tcproutes"),
            SourceKind::UdpRoute => (GATEWAY_GROUP, &["v1alpha2"], "udproutes"),
            SourceKind::Gateway => (GATEWAY_GROUP, &["v1"], "gateways"),
            SourceKind::VirtualService => (ISTIO_GROUP, &["v1", "v1beta1"], "virtualservices"),
            SourceKind::IstioGateway => (ISTIO_GROUP, &["v1", "v1beta1"], "gateways"),
        }
    }

    /// The API resources that can serve this kind, preferred first. The
    /// controller watches the first one the cluster serves; the fields we
    /// read are the same in every listed version.
    pub fn candidates(self) -> Vec<ApiResource> {
        let (group, versions, plural) = self.group_versions_plural();
        versions
            .iter()
            .map(|v| ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, v, self.kind()), plural))
            .collect()
    }

    /// True for CRD-based kinds that a cluster may not have (Gateway API, Istio).
    pub fn optional(self) -> bool {
        !matches!(
            self,
            SourceKind::Ingress | SourceKind::Service | SourceKind::EndpointSlice
        )
    }

    /// The kind of an object with this `apiVersion` and `kind`, among every
    /// version in [`candidates`](Self::candidates).
    pub fn from_type(api_version: &str, kind: &str) -> Option<SourceKind> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.kind() == kind && k.candidates().iter().any(|r| r.api_version == api_version))
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind is not served by this cluster (CRD absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub SourceKind);

/// Read access to the controller's caches. Objects are full objects
/// (metadata, and `data` with spec and status), as kube's [`DynamicObject`].
pub trait Lookup {
    fn get(
        &self,
        kind: SourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<DynamicObject>>, Unavailable>;
    /// Every object of `kind` in `namespace` (None: all namespaces).
    fn list(&self, kind: SourceKind, namespace: Option<&str>)
    -> Result<Vec<Arc<DynamicObject>>, Unavailable>;

    /// The EndpointSlices labelled `kubernetes.io/service-name=<service>` in
    /// `namespace`. The default filters `list`; caches override it with an
    /// index (health is checked for every host on every reconcile).
    fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Vec<Arc<DynamicObject>>, Unavailable> {
        Ok(self
            .list(SourceKind::EndpointSlice, Some(namespace))?
            .into_iter()
            .filter(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_SERVICE_NAME))
                    .is_some_and(|n| n == service)
            })
            .collect())
    }
}

/// Something the resolution read; a change to it must trigger a new
/// reconcile of the Gslb.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    Object {
        kind: SourceKind,
        namespace: String,
        name: String,
    },
    /// Any object of the kind in the namespace (a label selector was listed).
    Namespace { kind: SourceKind, namespace: String },
    /// Any object of the kind in any namespace.
    AllNamespaces(SourceKind),
    /// The EndpointSlices labelled `kubernetes.io/service-name=<service>` in the namespace.
    EndpointSlices { namespace: String, service: String },
}

impl Dependency {
    fn object(kind: SourceKind, namespace: &str, name: &str) -> Dependency {
        Dependency::Object {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A Service behind a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// What [`service_health`] reads for this Service: the Service and its EndpointSlices.
    pub fn dependencies(&self) -> [Dependency; 2] {
        [
            Dependency::object(SourceKind::Service, &self.namespace, &self.name),
            Dependency::EndpointSlices {
                namespace: self.namespace.clone(),
                service: self.name.clone(),
            },
        ]
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl From<ServiceKey> for crate::api::NamespacedName {
    fn from(k: ServiceKey) -> Self {
        crate::api::NamespacedName {
            namespace: k.namespace,
            name: k.name,
        }
    }
}

/// Addresses published in a source's status: IPs (both families) and
/// hostnames still to resolve (through the edge DNS, by the controller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAddresses {
    pub ips: Vec<IpAddr>,
    pub hostnames: Vec<String>,
}

impl SourceAddresses {
    fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    fn push_hostname(&mut self, name: &str) {
        let name = crate::core::names::normalize(name.trim());
        if !name.is_empty() && !self.hostnames.contains(&name) {
            self.hostnames.push(name);
        }
    }
}

/// A resolved traffic source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The matched source object (kind, namespace, name).
    pub source: (SourceKind, String, String),
    /// Hosts, normalized (lower case, no trailing dot), de-duplicated, in source order.
    pub hosts: Vec<String>,
    /// host → Services behind it (sorted, de-duplicated), in the order of `hosts`.
    pub servers: Vec<(String, Vec<ServiceKey>)>,
    /// Addresses published in the source's status (Ingress or Service LB
    /// status, Gateway `status.addresses`, the Istio gateway Service's LB status).
    pub addresses: SourceAddresses,
    /// Everything read, sorted: the source and what it points to, and the
    /// Services and EndpointSlices that [`service_health`] reads for `servers`.
    pub depends: Vec<Dependency>,
}

/// Why a Gslb cannot be resolved. [`reason`](Self::reason) is a CamelCase
/// condition reason; `Display` is the message, in upstream's words where
/// upstream has some.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Neither `spec.resourceRef` nor `spec.ingress` is set.
    #[error("neither spec.resourceRef nor spec.ingress is set")]
    NoSource,
    /// `spec.resourceRef` has neither a name nor a label selector.
    #[error("neither name nor label selector specified in ResourceRef")]
    NoReference,
    #[error("invalid label selector: {0}")]
    InvalidSelector(String),
    #[error("APIVersion:{api_version}, Kind:{kind} not supported")]
    UnsupportedKind { api_version: String, kind: String },
    /// The source's kind is not served by this cluster (its CRD is not installed).
    #[error("{0} is not served by this cluster (is its CRD installed?)")]
    KindNotServed(SourceKind),
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: SourceKind,
        namespace: String,
        name: String,
    },
    /// A selector matched 0 or more than 1 object.
    #[error("exactly 1 {kind} resource expected but {count} were found")]
    SeveralFound { kind: SourceKind, count: usize },
    /// `Service`, `TCPRoute` and `UDPRoute` sources need `k8gb.io/hostname` on the Gslb.
    #[error("Gslb {gslb}: a {kind} source requires a non-empty k8gb.io/hostname annotation")]
    MissingHostnameAnnotation { kind: SourceKind, gslb: String },
    #[error("can't find hosts in {kind} {name}")]
    NoHostnames { kind: SourceKind, name: String },
    #[error("service {namespace}/{name} is not of type LoadBalancer (type {service_type})")]
    NotLoadBalancer {
        namespace: String,
        name: String,
        service_type: String,
    },
    /// A route's `parentRefs` must name exactly one Gateway.
    #[error(
        "expected exactly 1 Gateway to be referenced by the route {route} but {count} were found{}",
        ignored_note(ignored_kinds)
    )]
    GatewayRef {
        route: String,
        count: usize,
        /// Kinds of the parentRefs skipped because they are not `Gateway`.
        ignored_kinds: Vec<String>,
    },
    #[error("unsupported address type {address_type} in status.addresses of Gateway {gateway}")]
    UnsupportedAddressType { gateway: String, address_type: String },
    /// A VirtualService must list exactly one gateway other than `mesh`.
    #[error(
        "expected exactly 1 Gateway to be referenced by the VirtualService {virtual_service} but {count} were found"
    )]
    IstioGatewayRef { virtual_service: String, count: usize },
    /// The Istio Gateway's `spec.selector` must match exactly one Service.
    #[error(
        "exactly 1 Service resource expected but {count} were found (Services labelled as the selector of Istio Gateway {gateway})"
    )]
    IstioGatewayServices { gateway: String, count: usize },
    #[error("annotation {key}: invalid value {value:?}: {detail}")]
    InvalidAnnotation {
        key: String,
        value: String,
        detail: String,
    },
    /// The object lacks a field we need or has one of the wrong type.
    #[error("{kind} {name} is malformed: {detail}")]
    Malformed {
        kind: SourceKind,
        name: String,
        detail: String,
    },
}

fn ignored_note(kinds: &[String]) -> String {
    if kinds.is_empty() {
        String::new()
    } else {
        format!(
            " (parentRefs of kind {} ignored: only Gateway is supported)",
            kinds.join(", ")
        )
    }
}

impl ResolveError {
    /// A CamelCase reason for a status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::NoSource => "NoSource",
            ResolveError::NoReference => "NoReference",
            ResolveError::InvalidSelector(_) => "InvalidSelector",
            ResolveError::UnsupportedKind { .. } => "UnsupportedKind",
            ResolveError::KindNotServed(_) => "KindNotServed",
            ResolveError::NotFound { .. } => "NotFound",
            ResolveError::SeveralFound { count: 0, .. } => "NotFound",
            ResolveError::SeveralFound { .. } => "SeveralFound",
            ResolveError::MissingHostnameAnnotation { .. } => "MissingHostnameAnnotation",
            ResolveError::NoHostnames { .. } => "NoHostnames",
            ResolveError::NotLoadBalancer { .. } => "NotLoadBalancer",
            ResolveError::GatewayRef { .. } => "InvalidGatewayRef",
            ResolveError::UnsupportedAddressType { .. } => "UnsupportedAddressType",
            ResolveError::IstioGatewayRef { .. } => "InvalidGatewayRef",
            ResolveError::IstioGatewayServices { .. } => "IstioGatewayService",
            ResolveError::InvalidAnnotation { .. } => "InvalidAnnotation",
            ResolveError::Malformed { .. } => "Malformed",
        }
    }
}

/// A failed resolution: the error and the dependencies read before it, so
/// that a later fix of the source (creating the missing Ingress, labelling
/// a second Service…) triggers a reconcile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Unresolved {
    pub error: ResolveError,
    /// Sorted, de-duplicated.
    pub depends: Vec<Dependency>,
}

impl Unresolved {
    /// The condition reason of the error.
    pub fn reason(&self) -> &'static str {
        self.error.reason()
    }
}

/// Dependencies collected during one resolution.
#[derive(Debug, Default)]
struct Deps(BTreeSet<Dependency>);

impl Deps {
    fn add(&mut self, d: Dependency) {
        self.0.insert(d);
    }

    fn into_vec(self) -> Vec<Dependency> {
        self.0.into_iter().collect()
    }
}

/// Resolves the Gslb's traffic source (§5.1).
///
/// Embedded mode (`spec.resourceRef` absent or empty, `spec.ingress` set)
/// reads the Ingress of the Gslb's name and namespace, which the controller
/// creates from `spec.ingress`. Otherwise the source is found by
/// `resourceRef.name` (namespace defaulting to the Gslb's) or by its label
/// selector (in the Gslb's namespace only), and exactly one object must match.
pub fn resolve(lookup: &dyn Lookup, gslb: &crate::api::Gslb) -> Result<Resolved, Unresolved> {
    let mut deps = Deps::default();
    match kinds::resolve(lookup, gslb, &mut deps) {
        Ok(mut resolved) => {
            for (_, services) in &resolved.servers {
                for svc in services {
                    for d in svc.dependencies() {
                        deps.add(d);
                    }
                }
            }
            resolved.depends = deps.into_vec();
            Ok(resolved)
        }
        Err(error) => Err(Unresolved {
            error,
            depends: deps.into_vec(),
        }),
    }
}
