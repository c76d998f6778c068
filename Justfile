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
