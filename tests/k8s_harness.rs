//! The real-Kubernetes harness (`tests/support/cluster.rs`) itself: two
//! control planes side by side, Deployments becoming EndpointSlices through
//! the controller-manager, scheduler and kwok, RBAC with a ServiceAccount
//! token, load-balancer status writes, and the apiserver and etcd going away
//! and coming back. Needs the binaries of `bash scripts/build-k8s.sh`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, NODE_NAME, client_for, k8s_bin};
use common::eventually;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: app}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: app}
spec:
  rules:
  - host: web.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
"#;

const RBAC: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: rbac}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: get-pods, namespace: rbac}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-get-pods, namespace: rbac}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: get-pods}
subjects:
- {kind: ServiceAccount, name: reader, namespace: rbac}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: rbac}
spec:
  serviceAccountName: reader
  containers:
  - {name: probe, image: example.invalid/probe:1}
"#;

/// IPs of the ready endpoints in the Service's EndpointSlices.
fn ready_endpoint_ips(c: &Cluster, ns: &str, svc: &str) -> Vec<IpAddr> {
    let out = c.kubectl_ok(&[
        "-n",
        ns,
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("EndpointSlice list JSON");
    let mut ips = Vec::new();
    for slice in v["items"].as_array().into_iter().flatten() {
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep["conditions"]["ready"] == Value::Bool(true) {
                for a in ep["addresses"].as_array().into_iter().flatten() {
                    ips.push(
                        a.as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(|| panic!("bad endpoint address {a}")),
                    );
                }
            }
        }
    }
    ips.sort();
    ips
}

fn slices_text(c: &Cluster, ns: &str) -> String {
    let objects = c.kubectl_ok(&["-n", ns, "get", "endpointslices,pods,replicasets", "-o", "wide"]);
    let events = c.kubectl_ok(&["-n", ns, "get", "events"]);
    format!("{objects}\n{events}")
}

fn can_i(c: &Cluster, verb: &str, resource: &str, who: &str) -> String {
    let out = c
        .kubectl()
        .args([
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            "rbac",
            &format!("--as={who}"),
        ])
        .output()
        .expect("run kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn two_clusters_endpoints_rbac_and_faults() {
    let t = Instant::now();
    let c1 = Cluster::start("k1", Ipv4Addr::new(127, 0, 0, 21));
    let first = t.elapsed();
    let mut c2 = Cluster::start("k2", Ipv4Addr::new(127, 0, 0, 22));
    eprintln!(
        "k1 started in {first:.1?} ({:?}), k2 in {:.1?} ({:?})",
        c1.start_times(),
        t.elapsed() - first,
        c2.start_times()
    );

    // The static admin token authenticates too.
    let by_token = std::process::Command::new(k8s_bin().join("kubectl"))
        .arg(format!("--server={}", c1.server()))
        .arg(format!("--certificate-authority={}", c1.ca_file().display()))
        .arg(format!("--token={}", c1.admin_token()))
        .args([
            "--kubeconfig=/dev/null",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.groups}",
        ])
        .output()
        .expect("run kubectl with the admin token");
    let groups = String::from_utf8_lossy(&by_token.stdout);
    assert!(
        by_token.status.success() && groups.contains("system:masters"),
        "admin token: {groups} {}",
        String::from_utf8_lossy(&by_token.stderr)
    );

    // A Deployment becomes ready endpoints with IPs from this cluster's pods.
    c1.kubectl_ok(&["create", "namespace", "app"]);
    c1.apply(APP);
    let two = eventually(Duration::from_secs(90), || {
        ready_endpoint_ips(&c1, "app", "web").len() == 2
    });
    assert!(two, "no 2 ready endpoints:\n{}", slices_text(&c1, "app"));
    let ips = ready_endpoint_ips(&c1, "app", "web");
    assert!(
        ips.iter().all(|ip| c1.in_pod_cidr(*ip)),
        "endpoint IPs {ips:?} outside {:?}",
        c1.pod_cidr()
    );
    assert!(!ips.iter().any(|ip| c2.in_pod_cidr(*ip)), "pod CIDRs overlap");
    let node_ip = c1.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "app",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert!(
        node_ip.split_whitespace().all(|n| n == NODE_NAME),
        "pods on {node_ip}"
    );

    c1.kubectl_ok(&["-n", "app", "scale", "deployment/web", "--replicas=0"]);
    let empty = eventually(Duration::from_secs(60), || {
        ready_endpoint_ips(&c1, "app", "web").is_empty()
    });
    assert!(
        empty,
        "endpoints left after scaling to 0:\n{}",
        slices_text(&c1, "app")
    );

    // Load-balancer status, as a cloud LB and an ingress controller write it.
    c1.set_service_lb_status("app", "lb", &["192.0.2.10", "192.0.2.11"]);
    let lb = c1.kubectl_ok(&[
        "-n",
        "app",
        "get",
        "service",
        "lb",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ]);
    assert_eq!(lb.trim(), "192.0.2.10 192.0.2.11");
    c1.set_ingress_status("app", "web", &["192.0.2.20"]);
    let ing = c1.kubectl_ok(&[
        "-n",
        "app",
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ]);
    assert_eq!(ing.trim(), "192.0.2.20");
    c1.set_ingress_status_hostnames("app", "web", &["lb.example.test"]);
    let ing = c1.kubectl_ok(&[
        "-n",
        "app",
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].hostname}",
    ]);
    assert_eq!(ing.trim(), "lb.example.test");

    // The clusters are independent.
    c1.kubectl_ok(&["create", "namespace", "only-in-k1"]);
    let other = c2
        .kubectl()
        .args(["get", "namespace", "only-in-k1"])
        .output()
        .expect("run kubectl");
    assert!(
        !other.status.success() && String::from_utf8_lossy(&other.stderr).contains("NotFound"),
        "namespace visible in k2: {}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert_eq!(
        c2.kubectl_ok(&["get", "deployments", "-A", "-o", "name"]).trim(),
        ""
    );

    // RBAC: a ServiceAccount allowed to get pods and nothing else.
    c1.kubectl_ok(&["create", "namespace", "rbac"]);
    c1.apply(RBAC);
    let who = "system:serviceaccount:rbac:reader";
    assert_eq!(can_i(&c1, "get", "pods", who), "yes");
    assert_eq!(can_i(&c1, "list", "secrets", who), "no");
    assert_eq!(can_i(&c1, "list", "pods", who), "no");
    let token_kc = c1.dir().join("reader.kubeconfig");
    c1.token_kubeconfig("rbac", "reader", &token_kc);
    let client = client_for(&token_kc).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "rbac");
    let pod = pods.get("probe").await.expect("get pods as the ServiceAccount");
    assert_eq!(pod.metadata.name.as_deref(), Some("probe"));
    let secrets: Api<Secret> = Api::namespaced(client, "rbac");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("list secrets as the ServiceAccount: expected 403, got {other:?}"),
    }
    let admin_pods: Api<Pod> = Api::namespaced(c1.client().await, "rbac");
    assert_eq!(
        admin_pods
            .list(&ListParams::default())
            .await
            .expect("admin lists pods")
            .items
            .len(),
        1
    );

    // Faults in k2: the apiserver and etcd go away and come back.
    c2.stop_apiserver();
    let down = c2
        .kubectl()
        .args(["get", "--raw=/readyz", "--request-timeout=3s"])
        .output();
    assert!(down.is_ok_and(|o| !o.status.success()), "apiserver still answers");
    let t = Instant::now();
    c2.start_apiserver();
    eprintln!("k2 apiserver restart: ready in {:.1?}", t.elapsed());
    c2.restart_etcd();
    c2.kubectl_ok(&["create", "namespace", "after-restart"]);
    let sa = eventually(Duration::from_secs(60), || {
        c2.kubectl()
            .args(["-n", "after-restart", "get", "serviceaccount", "default"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        sa,
        "controller-manager did not recover:\n{}",
        c2.log_tail("kube-controller-manager")
    );
    c2.check_alive();

    // The whole control plane, stopped and started on the same data.
    let t = Instant::now();
    c2.stop_control_plane();
    let stopped = t.elapsed();
    c2.start_control_plane();
    eprintln!(
        "k2 full stop in {stopped:.1?}, start again in {:.1?}",
        t.elapsed() - stopped
    );
    c2.kubectl_ok(&["get", "namespace", "after-restart"]);

    let t = Instant::now();
    drop(c2);
    drop(c1);
    eprintln!("both clusters torn down in {:.1?}", t.elapsed());
}
