//! Resolution per source kind (upstream `controllers/refresolver/*`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use kube::core::DynamicObject;

use super::view::{self, Doc, id, malformed, parse};
use super::{
    ANNOTATION_HOSTNAME, Dependency, Deps, Lookup, ResolveError, Resolved, Selector, ServiceKey,
    SourceAddresses, SourceKind,
};
use crate::api::{Gslb, ResourceRef};
use crate::core::names::normalize;

const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";
const GATEWAY_V1ALPHA2: &str = "gateway.networking.k8s.io/v1alpha2";
const GATEWAY_V1ALPHA3: &str = "gateway.networking.k8s.io/v1alpha3";

/// The source kind a `resourceRef` names, dispatching on the exact kind and
/// apiVersion pairs upstream accepts.
pub(super) fn ref_kind(api_version: &str, kind: &str) -> Option<SourceKind> {
    Some(match (kind, api_version) {
        ("Ingress", "networking.k8s.io/v1") => SourceKind::Ingress,
        ("Service", "v1") => SourceKind::Service,
        ("VirtualService", "networking.istio.io/v1" | "networking.istio.io/v1beta1") => {
            SourceKind::VirtualService
        }
        ("HTTPRoute", GATEWAY_V1) => SourceKind::HttpRoute,
        ("GRPCRoute", GATEWAY_V1) => SourceKind::GrpcRoute,
        ("TLSRoute", GATEWAY_V1 | GATEWAY_V1ALPHA2 | GATEWAY_V1ALPHA3) => SourceKind::TlsRoute,
        ("TCPRoute", GATEWAY_V1ALPHA2) => SourceKind::TcpRoute,
        ("UDPRoute", GATEWAY_V1ALPHA2) => SourceKind::UdpRoute,
        _ => return None,
    })
}

struct Ctx<'a> {
    lookup: &'a dyn Lookup,
    gslb_name: &'a str,
    gslb_namespace: &'a str,
    annotations: BTreeMap<String, String>,
}

impl Ctx<'_> {
    fn get(
        &self,
        deps: &mut Deps,
        kind: SourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<DynamicObject>, ResolveError> {
        deps.add(Dependency::object(kind, namespace, name));
        match self.lookup.get(kind, namespace, name) {
            Ok(Some(obj)) => Ok(obj),
            Ok(None) => Err(ResolveError::NotFound {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            Err(unavailable) => Err(ResolveError::KindNotServed(unavailable.0)),
        }
    }

    fn list(
        &self,
        deps: &mut Deps,
        kind: SourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<DynamicObject>>, ResolveError> {
        deps.add(match namespace {
            Some(ns) => Dependency::Namespace {
                kind,
                namespace: ns.to_string(),
            },
            None => Dependency::AllNamespaces(kind),
        });
        self.lookup
            .list(kind, namespace)
            .map_err(|unavailable| ResolveError::KindNotServed(unavailable.0))
    }

    /// The `k8gb.io/hostname` annotation of the Gslb, required by some kinds.
    fn hostname_annotation(&self, kind: SourceKind) -> Result<String, ResolveError> {
        let host = self
            .annotations
            .get(ANNOTATION_HOSTNAME)
            .map(|h| normalize(h.trim()))
            .unwrap_or_default();
        if host.is_empty() {
            return Err(ResolveError::MissingHostnameAnnotation {
                kind,
                gslb: format!("{}/{}", self.gslb_namespace, self.gslb_name),
            });
        }
        Ok(host)
    }

    /// Finds the one object a `resourceRef` designates (`queryopts`): by name
    /// (namespace defaulting to the Gslb's), else by label selector in the
    /// Gslb's namespace.
    fn find_one(
        &self,
        deps: &mut Deps,
        kind: SourceKind,
        r: &ResourceRef,
    ) -> Result<Arc<DynamicObject>, ResolveError> {
        if let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) {
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(self.gslb_namespace);
            return self.get(deps, kind, ns, name);
        }
        if r.match_labels.is_none() && r.match_expressions.is_none() {
            return Err(ResolveError::NoReference);
        }
        let selector = Selector::new(r.match_labels.as_ref(), r.match_expressions.as_deref())
            .map_err(ResolveError::InvalidSelector)?;
        let mut matched: Vec<_> = self
            .list(deps, kind, Some(self.gslb_namespace))?
            .into_iter()
            .filter(|o| selector.matches(&view::labels(o)))
            .collect();
        if matched.len() != 1 {
            return Err(ResolveError::SeveralFound {
                kind,
                count: matched.len(),
            });
        }
        Ok(matched.remove(0))
    }
}

/// Hosts in source order and the Services behind each.
#[derive(Default)]
struct Servers {
    hosts: Vec<String>,
    services: BTreeMap<String, Vec<ServiceKey>>,
}

impl Servers {
    fn add_host(&mut self, host: &str) -> Option<String> {
        let host = normalize(host.trim());
        if host.is_empty() {
            return None;
        }
        if !self.hosts.contains(&host) {
            self.hosts.push(host.clone());
            self.services.insert(host.clone(), Vec::new());
        }
        Some(host)
    }

    fn add_service(&mut self, host: &str, svc: ServiceKey) {
        if let Some(list) = self.services.get_mut(host) {
            list.push(svc);
        }
    }

    fn finish(
        mut self,
        source: (SourceKind, String, String),
        addresses: SourceAddresses,
    ) -> Result<Resolved, ResolveError> {
        if self.hosts.is_empty() {
            return Err(ResolveError::NoHostnames {
                kind: source.0,
                name: format!("{}/{}", source.1, source.2),
            });
        }
        let servers = self
            .hosts
            .iter()
            .map(|h| {
                let mut list = self.services.remove(h).unwrap_or_default();
                list.sort();
                list.dedup();
                (h.clone(), list)
            })
            .collect();
        Ok(Resolved {
            source,
            hosts: self.hosts,
            servers,
            addresses,
            depends: Vec::new(),
        })
    }
}

fn source_of(kind: SourceKind, obj: &DynamicObject) -> (SourceKind, String, String) {
    (
        kind,
        view::namespace(obj).to_string(),
        view::name(obj).to_string(),
    )
}

pub(super) fn resolve(lookup: &dyn Lookup, gslb: &Gslb, deps: &mut Deps) -> Result<Resolved, ResolveError> {
    let ctx = Ctx {
        lookup,
        gslb_name: gslb.metadata.name.as_deref().unwrap_or_default(),
        gslb_namespace: gslb.metadata.namespace.as_deref().unwrap_or_default(),
        annotations: gslb.metadata.annotations.clone().unwrap_or_default(),
    };
    let r = match gslb.spec.resource_ref.as_ref().filter(|r| !r.is_empty()) {
        Some(r) => r,
        None => {
            // Embedded mode: the Ingress the controller made from spec.ingress.
            if gslb
                .spec
                .ingress
                .as_ref()
                .is_none_or(|i| *i == Default::default())
            {
                return Err(ResolveError::NoSource);
            }
            let ing = ctx.get(deps, SourceKind::Ingress, ctx.gslb_namespace, ctx.gslb_name)?;
            return ingress(&ing);
        }
    };
    let api_version = r.api_version.as_deref().unwrap_or_default();
    let kind_name = r.kind.as_deref().unwrap_or_default();
    let Some(kind) = ref_kind(api_version, kind_name) else {
        return Err(ResolveError::UnsupportedKind {
            api_version: api_version.to_string(),
            kind: kind_name.to_string(),
        });
    };
    let obj = ctx.find_one(deps, kind, r)?;
    match kind {
        SourceKind::Ingress => ingress(&obj),
        SourceKind::Service => lb_service(&ctx, &obj),
        SourceKind::VirtualService => virtual_service(&ctx, deps, &obj),
        SourceKind::HttpRoute | SourceKind::GrpcRoute | SourceKind::TlsRoute => {
            route(&ctx, deps, kind, &obj, false)
        }
        SourceKind::TcpRoute | SourceKind::UdpRoute => route(&ctx, deps, kind, &obj, true),
        SourceKind::EndpointSlice | SourceKind::Gateway | SourceKind::IstioGateway => {
            Err(ResolveError::UnsupportedKind {
                api_version: api_version.to_string(),
                kind: kind_name.to_string(),
            })
        }
    }
}

fn parse_ip(kind: SourceKind, obj: &DynamicObject, path: &str, s: &str) -> Result<IpAddr, ResolveError> {
    s.trim()
        .parse()
        .map_err(|_| malformed(kind, obj, format!("{path}: {s:?} is not an IP address")))
}

/// `status.loadBalancer.ingress[]` of an Ingress or Service.
fn lb_addresses(
    kind: SourceKind,
    obj: &DynamicObject,
    status: Option<view::LbStatus>,
) -> Result<SourceAddresses, ResolveError> {
    let mut out = SourceAddresses::default();
    let entries = status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        if let Some(ip) = entry.ip.as_deref().filter(|s| !s.is_empty()) {
            let path = format!("status.loadBalancer.ingress[{i}].ip");
            out.push_ip(parse_ip(kind, obj, &path, ip)?);
        }
        if let Some(h) = entry.hostname.as_deref() {
            out.push_hostname(h);
        }
    }
    Ok(out)
}

/// Ingress (embedded or referenced): hosts from `rules[].host`, Services
/// from `rules[].http.paths[].backend.service.name`.
fn ingress(obj: &DynamicObject) -> Result<Resolved, ResolveError> {
    let kind = SourceKind::Ingress;
    let doc: Doc<view::IngressSpec, view::LbStatus> = parse(kind, obj)?;
    let ns = view::namespace(obj);
    let mut servers = Servers::default();
    let rules = doc.spec.and_then(|s| s.rules).unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let Some(host) = servers.add_host(rule.host.as_deref().unwrap_or_default()) else {
            // A rule without a host matches every name: nothing to publish.
            continue;
        };
        let Some(http) = &rule.http else {
            return Err(malformed(kind, obj, format!("spec.rules[{i}].http is missing")));
        };
        for path in http.paths.iter().flatten() {
            // Resource backends are not Services: skipped, as upstream.
            let name = path
                .backend
                .as_ref()
                .and_then(|b| b.service.as_ref())
                .and_then(|s| s.name.as_deref())
                .filter(|n| !n.is_empty());
            if let Some(name) = name {
                servers.add_service(&host, ServiceKey::new(ns, name));
            }
        }
    }
    let addresses = lb_addresses(kind, obj, doc.status)?;
    servers.finish(source_of(kind, obj), addresses)
}

/// A `type: LoadBalancer` Service; the host comes from the Gslb's annotation.
fn lb_service(ctx: &Ctx<'_>, obj: &DynamicObject) -> Result<Resolved, ResolveError> {
    let kind = SourceKind::Service;
    let doc: Doc<view::ServiceSpec, view::LbStatus> = parse(kind, obj)?;
    let service_type = doc
        .spec
        .and_then(|s| s.type_)
        .unwrap_or_else(|| "ClusterIP".to_string());
    if service_type != "LoadBalancer" {
        return Err(ResolveError::NotLoadBalancer {
            namespace: view::namespace(obj).to_string(),
            name: view::name(obj).to_string(),
            service_type,
        });
    }
    let host = ctx.hostname_annotation(kind)?;
    let mut servers = Servers::default();
    servers.add_host(&host);
    servers.add_service(&host, ServiceKey::new(view::namespace(obj), view::name(obj)));
    let addresses = lb_addresses(kind, obj, doc.status)?;
    servers.finish(source_of(kind, obj), addresses)
}

/// The Service a destination host names. Istio reads a short name in the
/// VirtualService's namespace and `<name>.<namespace>.svc[.<cluster domain>]`
/// as a Service of that namespace; anything else is taken verbatim as a
/// Service name in the VirtualService's namespace (as upstream), which then
/// reads as missing.
fn istio_destination(vs_namespace: &str, host: &str) -> ServiceKey {
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() >= 3 && labels[2] == "svc" && !labels[0].is_empty() && !labels[1].is_empty() {
        return ServiceKey::new(labels[1], labels[0]);
    }
    ServiceKey::new(vs_namespace, host)
}

/// Istio VirtualService: hosts from `spec.hosts`, Services from the route
/// destinations, addresses from the LB status of the one Service labelled
/// as the selector of the one Istio Gateway the VirtualService is bound to.
fn virtual_service(ctx: &Ctx<'_>, deps: &mut Deps, obj: &DynamicObject) -> Result<Resolved, ResolveError> {
    let kind = SourceKind::VirtualService;
    let spec: view::VirtualServiceSpec = parse::<Doc<_, serde_json::Value>>(kind, obj)?
        .spec
        .unwrap_or_default();
    let vs_ns = view::namespace(obj);

    let gateways: Vec<&String> = spec.gateways.iter().flatten().filter(|g| *g != "mesh").collect();
    let [gateway] = gateways.as_slice() else {
        return Err(ResolveError::IstioGatewayRef {
            virtual_service: id(obj),
            count: gateways.len(),
        });
    };
    let (gw_ns, gw_name) = match gateway.split('/').collect::<Vec<_>>().as_slice() {
        [name] if !name.is_empty() => (vs_ns, *name),
        [ns, name] if !name.is_empty() => (if ns.is_empty() || *ns == "." { vs_ns } else { ns }, *name),
        _ => {
            return Err(malformed(
                kind,
                obj,
                format!("spec.gateways: {gateway:?} is not of the form <namespace>/<name>"),
            ));
        }
    };
    let gw = ctx.get(deps, SourceKind::IstioGateway, gw_ns, gw_name)?;
    let selector = parse::<Doc<view::IstioGatewaySpec, serde_json::Value>>(SourceKind::IstioGateway, &gw)?
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default();
    if selector.is_empty() {
        return Err(malformed(
            SourceKind::IstioGateway,
            &gw,
            "spec.selector is empty: cannot tell which Service exposes the gateway",
        ));
    }
    let selector = Selector::from_labels(&selector);
    let mut services: Vec<_> = ctx
        .list(deps, SourceKind::Service, None)?
        .into_iter()
        .filter(|s| selector.matches(&view::labels(s)))
        .collect();
    if services.len() != 1 {
        return Err(ResolveError::IstioGatewayServices {
            gateway: id(&gw),
            count: services.len(),
        });
    }
    let lb = services.remove(0);
    deps.add(Dependency::object(
        SourceKind::Service,
        view::namespace(&lb),
        view::name(&lb),
    ));
    let lb_doc: Doc<serde_json::Value, view::LbStatus> = parse(SourceKind::Service, &lb)?;
    let addresses = lb_addresses(SourceKind::Service, &lb, lb_doc.status)?;

    let mut backends = Vec::new();
    let route_lists = [("http", &spec.http), ("tls", &spec.tls), ("tcp", &spec.tcp)];
    for (section, routes) in route_lists {
        for (i, r) in routes.iter().flatten().enumerate() {
            for (j, route) in r.route.iter().flatten().enumerate() {
                let host = route
                    .destination
                    .as_ref()
                    .and_then(|d| d.host.as_deref())
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        malformed(
                            kind,
                            obj,
                            format!("spec.{section}[{i}].route[{j}].destination.host is missing"),
                        )
                    })?;
                backends.push(istio_destination(vs_ns, host));
            }
        }
    }
    let mut servers = Servers::default();
    for h in spec.hosts.iter().flatten() {
        if let Some(host) = servers.add_host(h) {
            for b in &backends {
                servers.add_service(&host, b.clone());
            }
        }
    }
    servers.finish(source_of(kind, obj), addresses)
}

/// Gateway API routes: hosts from `spec.hostnames` (HTTPRoute, GRPCRoute,
/// TLSRoute) or the Gslb's `k8gb.io/hostname` (TCPRoute, UDPRoute);
/// Services from every `rules[].backendRefs[]`; addresses from
/// `status.addresses` of the one Gateway among `parentRefs`.
fn route(
    ctx: &Ctx<'_>,
    deps: &mut Deps,
    kind: SourceKind,
    obj: &DynamicObject,
    host_from_annotation: bool,
) -> Result<Resolved, ResolveError> {
    let spec: view::RouteSpec = parse::<Doc<_, serde_json::Value>>(kind, obj)?
        .spec
        .unwrap_or_default();
    let route_ns = view::namespace(obj);

    // The parent Gateway: parentRefs of kind Gateway (or unset); several
    // refs to one Gateway (one per listener section) count once.
    let mut parents: Vec<(String, String)> = Vec::new();
    let mut ignored = Vec::new();
    for (i, p) in spec.parent_refs.iter().flatten().enumerate() {
        match p.kind.as_deref() {
            None | Some("Gateway") => {}
            Some(other) => {
                ignored.push(other.to_string());
                continue;
            }
        }
        let name = p
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| malformed(kind, obj, format!("spec.parentRefs[{i}].name is missing")))?;
        let ns = p
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(route_ns);
        let key = (ns.to_string(), name.to_string());
        if !parents.contains(&key) {
            parents.push(key);
        }
    }
    let [(gw_ns, gw_name)] = parents.as_slice() else {
        return Err(ResolveError::GatewayRef {
            route: id(obj),
            count: parents.len(),
            ignored_kinds: ignored,
        });
    };
    let gw = ctx.get(deps, SourceKind::Gateway, gw_ns, gw_name)?;
    let addresses = gateway_addresses(&gw)?;

    let mut backends = Vec::new();
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        for (j, b) in rule.backend_refs.iter().flatten().enumerate() {
            let name = b.name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
                malformed(
                    kind,
                    obj,
                    format!("spec.rules[{i}].backendRefs[{j}].name is missing"),
                )
            })?;
            let ns = b
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(route_ns);
            backends.push(ServiceKey::new(ns, name));
        }
    }

    let hosts = if host_from_annotation {
        vec![ctx.hostname_annotation(kind)?]
    } else {
        spec.hostnames.unwrap_or_default()
    };
    let mut servers = Servers::default();
    for h in &hosts {
        if let Some(host) = servers.add_host(h) {
            for b in &backends {
                servers.add_service(&host, b.clone());
            }
        }
    }
    servers.finish(source_of(kind, obj), addresses)
}

/// `status.addresses` of a Gateway: `IPAddress` (or no type) is an IP,
/// `Hostname` a name to resolve, any other type an error.
fn gateway_addresses(gw: &DynamicObject) -> Result<SourceAddresses, ResolveError> {
    let kind = SourceKind::Gateway;
    let doc: Doc<serde_json::Value, view::GatewayStatus> = parse(kind, gw)?;
    let mut out = SourceAddresses::default();
    let addresses = doc.status.and_then(|s| s.addresses).unwrap_or_default();
    for (i, a) in addresses.iter().enumerate() {
        let value = a.value.as_deref().unwrap_or_default();
        match a.type_.as_deref() {
            None | Some("IPAddress") => {
                let path = format!("status.addresses[{i}].value");
                out.push_ip(parse_ip(kind, gw, &path, value)?);
            }
            Some("Hostname") => out.push_hostname(value),
            Some(other) => {
                return Err(ResolveError::UnsupportedAddressType {
                    gateway: id(gw),
                    address_type: other.to_string(),
                });
            }
        }
    }
    Ok(out)
}
