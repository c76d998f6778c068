//! Gslb status: what it should say (pure), and the smallest merge patch that
//! makes the stored status say it — none when nothing changed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::sources::ServiceKey;
use crate::api::{Condition, GslbStatus, HealthStatus, LoadBalancerStatus, NamespacedName, Server};
use crate::core::health::Health;
use crate::metrics::GslbReport;

/// The `Ready` condition's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub ok: bool,
    /// CamelCase reason.
    pub reason: String,
    pub message: String,
}

impl Ready {
    pub fn yes(message: impl Into<String>) -> Ready {
        Ready {
            ok: true,
            reason: "Served".into(),
            message: message.into(),
        }
    }

    pub fn no(reason: impl Into<String>, message: impl Into<String>) -> Ready {
        Ready {
            ok: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a reconcile found out about one Gslb.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every host of the source.
    pub hosts: Vec<String>,
    /// Hosts inside a served zone, with their Services.
    pub servers: Vec<(String, Vec<ServiceKey>)>,
    pub health: BTreeMap<String, Health>,
    pub exposed: Vec<IpAddr>,
    /// The engine's answers, once it served the Gslb.
    pub report: Option<GslbReport>,
}

/// The status the Gslb should have. `generation` goes into the condition.
pub fn desired(geo_tag: &str, outcome: &Outcome, ready: &Ready, generation: Option<i64>) -> GslbStatus {
    let mut healthy_records = BTreeMap::new();
    if let Some(r) = &outcome.report {
        for h in &r.hosts {
            if !h.answer.is_empty() {
                healthy_records.insert(h.host.clone(), h.answer.iter().map(|ip| ip.to_string()).collect());
            }
        }
    }
    GslbStatus {
        service_health: outcome
            .servers
            .iter()
            .map(|(host, _)| {
                let h = outcome.health.get(host).copied().unwrap_or(Health::NotFound);
                (host.clone(), HealthStatus::from(h))
            })
            .collect(),
        healthy_records,
        geo_tag: geo_tag.to_owned(),
        hosts: outcome.hosts.join(", "),
        load_balancer: LoadBalancerStatus {
            exposed_ips: outcome.exposed.iter().map(|ip| ip.to_string()).collect(),
        },
        servers: outcome
            .servers
            .iter()
            .map(|(host, services)| Server {
                host: host.clone(),
                services: services
                    .iter()
                    .map(|s| NamespacedName {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                    })
                    .collect(),
            })
            .collect(),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ready.ok { "True" } else { "False" }.into(),
            last_transition_time: String::new(),
            reason: ready.reason.clone(),
            message: ready.message.clone(),
            observed_generation: generation,
        }],
    }
}

/// The merge patch (`{"status": …}`) that turns `current` (the object's
/// stored status, possibly absent or malformed) into `want`, or `None` when
/// they already agree. A condition keeps its lastTransitionTime while its
/// status stays the same; `now` stamps the ones that flip.
pub fn patch(current: Option<&Value>, mut want: GslbStatus, now: &str) -> Option<Value> {
    let parsed: Option<GslbStatus> = current.and_then(|c| serde_json::from_value(c.clone()).ok());
    for c in &mut want.conditions {
        let prev = parsed
            .as_ref()
            .and_then(|p| p.conditions.iter().find(|pc| pc.type_ == c.type_));
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status && !p.last_transition_time.is_empty() => {
                p.last_transition_time.clone()
            }
            _ => now.to_owned(),
        };
    }
    if parsed.as_ref() == Some(&want) {
        return None;
    }
    let want = serde_json::to_value(&want).ok()?;
    let diff = match current {
        Some(c) => merge_diff(c, &want),
        None => want,
    };
    Some(serde_json::json!({ "status": diff }))
}

/// An RFC 7386 merge patch from `old` to `new`: changed members, and `null`
/// for members that must go. (No crate computes merge-patch diffs; a JSON
/// Patch would do, but the API emulator our tests use only speaks merge.)
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_diff(ov, nv));
                    }
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome() -> Outcome {
        Outcome {
            hosts: vec!["app.cloud.example.com".into(), "other.example.org".into()],
            servers: vec![(
                "app.cloud.example.com".into(),
                vec![ServiceKey {
                    namespace: "demo".into(),
                    name: "web".into(),
                }],
            )],
            health: [("app.cloud.example.com".to_owned(), Health::Healthy)].into(),
            exposed: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            report: None,
        }
    }

    #[test]
    fn desired_status_has_upstream_fields() {
        let s = desired("eu", &outcome(), &Ready::yes("serving 1 host"), Some(3));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["geoTag"], "eu");
        assert_eq!(v["hosts"], "app.cloud.example.com, other.example.org");
        assert_eq!(v["serviceHealth"]["app.cloud.example.com"], "Healthy");
        assert_eq!(
            v["loadBalancer"]["exposedIps"],
            json!(["10.0.0.1", "2001:db8::1"])
        );
        assert_eq!(
            v["servers"][0]["services"][0],
            json!({"namespace": "demo", "name": "web"})
        );
        assert_eq!(v["conditions"][0]["type"], "Ready");
        assert_eq!(v["conditions"][0]["observedGeneration"], 3);
    }

    #[test]
    fn unchanged_status_gives_no_patch_and_keeps_transition_time() {
        let want = desired("eu", &outcome(), &Ready::yes("ok"), Some(1));
        let first = patch(None, want.clone(), "2026-01-01T00:00:00Z").unwrap();
        let stored = first["status"].clone();
        assert_eq!(patch(Some(&stored), want.clone(), "2026-02-02T00:00:00Z"), None);
        // a flip stamps a new time, only the changed members are sent
        let flipped = desired("eu", &outcome(), &Ready::no("NoSourceFound", "x"), Some(1));
        let p = patch(Some(&stored), flipped, "2026-02-02T00:00:00Z").unwrap();
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2026-02-02T00:00:00Z"
        );
        assert!(p["status"].get("geoTag").is_none());
    }

    #[test]
    fn removed_members_are_nulled() {
        let old = json!({"serviceHealth": {"a": "Healthy", "b": "Healthy"}, "x": 1});
        let new = json!({"serviceHealth": {"a": "Healthy"}});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"serviceHealth": {"b": null}, "x": null})
        );
    }

    #[test]
    fn malformed_stored_status_is_replaced() {
        let want = desired("eu", &outcome(), &Ready::yes("ok"), None);
        let bad = json!({"serviceHealth": 7});
        let p = patch(Some(&bad), want, "t").unwrap();
        assert_eq!(p["status"]["serviceHealth"]["app.cloud.example.com"], "Healthy");
    }
}
