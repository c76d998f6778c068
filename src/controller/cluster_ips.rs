//! This cluster's own DNS addresses in Kubernetes mode (upstream §5.4): the
//! glue of its NS name, and what peers and the edge are told.
//!
//! 1. `CLUSTER_EXPOSED_IPS`, when set.
//! 2. Else, unless `COREDNS_SERVICE_TYPE` is LoadBalancer: the first Ingress
//!    (any namespace, by namespace/name) labelled `k8gb.io/ip-source=true`,
//!    its load balancer IPs (hostnames ignored, as upstream).
//! 3. Else the DNS Service in `POD_NAMESPACE`, labelled
//!    `app.kubernetes.io/component=dns` (our chart), or upstream's
//!    `app.kubernetes.io/name=coredns` (not the metrics component): exactly one; ClusterIP → its cluster IPs, else its
//!    load balancer IPs, and hostnames through the edge DNS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::sources::{Lookup, SourceKind};
use crate::config::{Config, ServiceType};
use crate::engine::Event;

/// Where the addresses come from, before hostnames are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub ips: Vec<IpAddr>,
    pub hostnames: Vec<String>,
}

fn lb_status(o: &DynamicObject) -> Found {
    let mut f = Found::default();
    let list = o
        .data
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for entry in list {
        if let Some(ip) = entry
            .get("ip")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        {
            f.ips.push(ip);
        } else if let Some(h) = entry.get("hostname").and_then(Value::as_str) {
            f.hostnames.push(h.to_owned());
        }
    }
    f
}

fn is_dns_service(o: &DynamicObject) -> bool {
    let l = o.labels();
    let get = |k: &str| l.get(k).map(String::as_str);
    get("app.kubernetes.io/component") == Some("dns")
        || (get("app.kubernetes.io/name") == Some("coredns")
            && get("app.kubernetes.io/component") != Some("metrics"))
}

/// The addresses as §5.4 finds them in the caches, or why none.
pub fn find(cfg: &Config, lookup: &dyn Lookup) -> Result<Found, String> {
    if !cfg.cluster_exposed_ips.is_empty() {
        return Ok(Found {
            ips: cfg.cluster_exposed_ips.clone(),
            hostnames: Vec::new(),
        });
    }
    if cfg.service_type != ServiceType::LoadBalancer {
        let mut ingresses: Vec<Arc<DynamicObject>> = lookup
            .list(SourceKind::Ingress, None)
            .map_err(|_| "Ingresses are not served by this cluster".to_owned())?
            .into_iter()
            .filter(|o| o.labels().get("k8gb.io/ip-source").map(String::as_str) == Some("true"))
            .collect();
        ingresses.sort_by_key(|o| (o.namespace(), o.name_any()));
        let first = ingresses.first().ok_or(
            "no Ingress labelled k8gb.io/ip-source=true (COREDNS_SERVICE_TYPE is not LoadBalancer; or set CLUSTER_EXPOSED_IPS)",
        )?;
        let mut f = lb_status(first);
        f.hostnames.clear();
        if f.ips.is_empty() {
            return Err(format!(
                "Ingress {}/{} (k8gb.io/ip-source) has no load balancer IP yet",
                first.namespace().unwrap_or_default(),
                first.name_any()
            ));
        }
        return Ok(f);
    }
    let services: Vec<Arc<DynamicObject>> = lookup
        .list(SourceKind::Service, Some(&cfg.pod_namespace))
        .map_err(|_| "Services are not served by this cluster".to_owned())?
        .into_iter()
        .filter(|o| is_dns_service(o))
        .collect();
    let svc = match services.as_slice() {
        [one] => one,
        [] => {
            return Err(format!(
                "no DNS Service in namespace {} (label app.kubernetes.io/component=dns); or set CLUSTER_EXPOSED_IPS",
                cfg.pod_namespace
            ));
        }
        many => {
            return Err(format!(
                "exactly 1 DNS Service expected in namespace {} but {} were found",
                cfg.pod_namespace,
                many.len()
            ));
        }
    };
    if svc.data.pointer("/spec/type").and_then(Value::as_str) == Some("ClusterIP") {
        let ips: Vec<IpAddr> = svc
            .data
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect();
        return Ok(Found {
            ips,
            hostnames: Vec::new(),
        });
    }
    let f = lb_status(svc);
    if f.ips.is_empty() && f.hostnames.is_empty() {
        return Err(format!(
            "no LoadBalancer ExternalIPs are found on Service {}/{}",
            cfg.pod_namespace,
            svc.name_any()
        ));
    }
    Ok(f)
}

/// Keeps `out` and the engine up to date with this cluster's DNS addresses,
/// re-reading the caches every `every` (a cheap in-memory read).
pub async fn run(
    cfg: Arc<Config>,
    lookup: Arc<dyn Lookup + Send + Sync>,
    engine: mpsc::Sender<Event>,
    out: watch::Sender<Vec<IpAddr>>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut last_error = String::new();
    loop {
        let found = find(&cfg, lookup.as_ref());
        let ips = match found {
            Ok(f) if f.hostnames.is_empty() => Ok(f.ips),
            Ok(f) => match crate::peer::resolve_via_edge(&cfg, &f.hostnames).await {
                Ok(mut more) => {
                    let mut ips = f.ips;
                    ips.append(&mut more);
                    Ok(ips)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match ips {
            Ok(mut ips) => {
                ips.sort();
                ips.dedup();
                last_error.clear();
                if *out.borrow() != ips {
                    tracing::info!(ips = ?ips, "this cluster's DNS addresses");
                    out.send_replace(ips.clone());
                    if engine.send(Event::ClusterIps(ips)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // keep the last good addresses; say so once
                if e != last_error {
                    tracing::warn!("this cluster's DNS addresses: {e}");
                    last_error = e;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigArgs, load};
    use crate::controller::store::Stores;
    use serde_json::json;

    fn cfg(service_type: &str, exposed: Option<&str>) -> Config {
        load(&ConfigArgs {
            cluster_geo_tag: Some("eu".into()),
            dns_zones: Some("example.com:cloud.example.com:30".into()),
            pod_namespace: Some("k8gb".into()),
            coredns_service_type: Some(service_type.into()),
            cluster_exposed_ips: exposed.map(Into::into),
            ..Default::default()
        })
        .unwrap()
    }

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn dns_service(name: &str, ty: &str) -> DynamicObject {
        obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "k8gb",
                "labels": {"app.kubernetes.io/name": "k8gb", "app.kubernetes.io/component": "dns"}},
            "spec": {"type": ty, "clusterIPs": ["10.96.0.53"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.53"}, {"ip": "2001:db8::53"}]}}}))
    }

    #[test]
    fn precedence_and_errors() {
        let ip_source = obj(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "src", "namespace": "any", "labels": {"k8gb.io/ip-source": "true"}},
            "spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}, {"hostname": "x.elb.example"}]}}}));
        let stores = Stores::from_objects([
            (SourceKind::Service, dns_service("k8gb-dns", "LoadBalancer")),
            (SourceKind::Ingress, ip_source),
        ]);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // CLUSTER_EXPOSED_IPS wins
        let f = find(&cfg("LoadBalancer", Some("192.0.2.1")), &stores).unwrap();
        assert_eq!(f.ips, vec![ip("192.0.2.1")]);
        // not LoadBalancer: the ip-source Ingress, hostnames ignored
        let f = find(&cfg("ClusterIP", None), &stores).unwrap();
        assert_eq!(
            f,
            Found {
                ips: vec![ip("198.51.100.9")],
                hostnames: vec![]
            }
        );
        // LoadBalancer: our DNS Service, IPv6 kept
        let f = find(&cfg("LoadBalancer", None), &stores).unwrap();
        assert_eq!(f.ips, vec![ip("203.0.113.53"), ip("2001:db8::53")]);
        // two DNS Services: an error naming the count
        let two = Stores::from_objects([
            (SourceKind::Service, dns_service("a", "LoadBalancer")),
            (SourceKind::Service, dns_service("b", "LoadBalancer")),
        ]);
        let e = find(&cfg("LoadBalancer", None), &two).unwrap_err();
        assert!(e.contains("exactly 1") && e.contains("2 were found"), "{e}");
        // none
        let e = find(&cfg("LoadBalancer", None), &Stores::from_objects([])).unwrap_err();
        assert!(e.contains("no DNS Service"), "{e}");
    }
}
