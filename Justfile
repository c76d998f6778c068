# k8gb developer recipes. `just --list` shows them with these comments.

# Run the whole test suite, installing missing test tools first (the README's test command).
test *ARGS:
    bash scripts/test.sh {{ARGS}}

# Everything CI runs: tests, rustfmt check, clippy with warnings as errors.
ci:
    bash .ci/run

# Format the code.
fmt:
    cargo fmt --all

# Lint with clippy, warnings as errors.
lint:
    cargo clippy --all-targets -- -D warnings

# Regenerate the chart's CRD copies from `k8gb crd` (a test fails when they drift).
crds:
    cargo run --quiet -- crd --out-dir chart/k8gb/crds

# Validate a configuration file (default: the standalone example).
check-config FILE="examples/standalone.yaml":
    cargo run --quiet -- check-config --config {{FILE}}

# Build the release binary.
build:
    cargo build --release

# Fuzz the DNS query path for SECONDS (stable toolchain via RUSTC_BOOTSTRAP; needs `cargo install cargo-fuzz`).
fuzz SECONDS="300":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run query_path -- -max_total_time={{SECONDS}}

# The three-cluster demo on loopback (failover and fail-back, timed).
demo:
    cargo run --release -- demo

# Throughput and CPU per query against Knot DNS (installs knot and dnsperf if missing).
bench-qps:
    bench/dns-qps --rounds 3 --duration 10

# Convergence of a health change across three clusters, push vs polling, UDP vs DoT.
bench-convergence:
    bench/convergence --cycles 30

# Kubernetes mode: EndpointSlice readiness change to DNS answer, against the kmock API emulator.
bench-readiness:
    bench/readiness --cycles 50

# Kubernetes mode on two real control planes: kubectl scale of eu's app to every cluster answering without it, and back.
bench-kube-failover CYCLES="20":
    bench/kube-failover/run --cycles {{CYCLES}}

# Lint and render the Helm chart offline and check it (RBAC, pod security, schemas, checkov) and the demo scripts.
chart-test:
    cargo test --test chart

# Build the container image k8gb-local:dev (the demo loads it into its clusters).
image TAG="k8gb-local:dev":
    docker build -t {{TAG}} .

# Demo on kind: a BIND edge and clusters eu and us on Docker network k8gb-demo (needs docker, kind, kubectl, dig).
demo-kind-up:
    bash e2e/demo.sh kind-up

# Demo on k3d: the same edge and clusters with k3d instead of kind (needs docker, k3d, kubectl, dig).
demo-k3d-up:
    bash e2e/demo.sh k3d-up

# Build the image and load it into the demo clusters (kind load / k3d image import).
demo-load-image:
    bash e2e/demo.sh load-image

# Install the chart in each demo region with kind-configs/values-*.yaml and the TSIG Secret of the edge (needs helm).
demo-install:
    bash e2e/demo.sh install

# Deploy the demo app with one Gslb per strategy in every region and print each region's answers.
demo-app:
    bash e2e/demo.sh app

# Fail over: scale eu's app behind failover.cloud.example.com to 0, dig both regions until they answer us, then back.
demo-failover:
    bash e2e/demo.sh failover

# The whole demo on kind, from nothing to a failover (demo-k3d-up instead of demo-kind-up for k3d).
demo-kind: demo-kind-up demo-load-image demo-install demo-app demo-failover

# Run the end-to-end tests e2e/test-*.sh against the running demo (or only the named ones).
e2e *TESTS:
    bash e2e/run.sh {{TESTS}}

# Delete the demo clusters, the edge container, the Docker network and .demo/.
demo-down:
    bash e2e/demo.sh down
