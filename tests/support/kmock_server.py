"""In-memory Kubernetes API for the controller tests: PyPI kmock's emulator on
plain HTTP, with the CRDs k8gb reads registered (k8gb.io and legacy Gslbs,
ZoneDelegations, DNSEndpoints, Gateway API routes, Istio).

usage: python3 kmock_server.py HOST PORT     (runs until killed; prints "ready" once serving)
kmock is not a real API server: no resourceVersion semantics, no validation,
no server-side apply; merge patches and watches work, which is what the
controller uses."""
import asyncio
import sys

import kmock

CRDS = [
    ("k8gb.io/v1beta1/gslbs", "Gslb", "gslb", True),
    ("k8gb.absa.oss/v1beta1/gslbs", "Gslb", "gslb", True),
    ("k8gb.io/v1beta1/zonedelegations", "ZoneDelegation", "zonedelegation", False),
    ("externaldns.k8s.io/v1alpha1/dnsendpoints", "DNSEndpoint", "dnsendpoint", True),
    ("gateway.networking.k8s.io/v1/gateways", "Gateway", "gateway", True),
    ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", "httproute", True),
    ("gateway.networking.k8s.io/v1/grpcroutes", "GRPCRoute", "grpcroute", True),
    ("networking.istio.io/v1/virtualservices", "VirtualService", "virtualservice", True),
    ("networking.istio.io/v1/gateways", "Gateway", "gateway", True),
]


async def main(host: str, port: int) -> None:
    k = kmock.KubernetesEmulator()
    k.resources.load_bundled()
    for path, kind, singular, namespaced in CRDS:
        k.resources[path] = kmock.ResourceInfo(
            kind=kind, singular=singular, namespaced=namespaced,
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            subresources={"status"})
    async with k, kmock.Server(k, host=host, port=port):
        print("ready", flush=True)
        await asyncio.Event().wait()


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
