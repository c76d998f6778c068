# syntax=docker/dockerfile:1
# The k8gb image: one static binary on distroless/static, running as 65532.
#
#   docker build -t k8gb-local:dev .                                  # this machine's architecture
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMG .   # both (the release workflow)
#
# The build stage runs on the builder's own platform and cross-compiles to the
# target's static musl libc, with zig as C compiler and linker (for ring): no
# emulation, the same recipe for every architecture.

ARG RUST_VERSION=1.95.0

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETARCH
ARG ZIGLANG_VERSION=0.13.0
ARG CARGO_ZIGBUILD_VERSION=0.19.8
# Recorded in the k8gb_runtime_info metric.
ARG K8GB_GIT_SHA=unknown
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && pip3 install --no-cache-dir --break-system-packages \
      "ziglang==${ZIGLANG_VERSION}" "cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}"
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac >/rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=k8gb-target-${TARGETARCH},target=/src/target \
    target="$(cat /rust-target)" \
 && K8GB_GIT_SHA="${K8GB_GIT_SHA}" K8GB_RUST_VERSION="$(rustc --version | cut -d' ' -f2)" \
    cargo zigbuild --locked --release --bin k8gb --target "$target" \
 && cp "target/$target/release/k8gb" /k8gb

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="k8gb" \
      org.opencontainers.image.description="Global server load balancer for Kubernetes, in one binary" \
      org.opencontainers.image.source="https://github.com/k8gb-rs/k8gb" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /k8gb /k8gb
USER 65532:65532
# DNS (UDP and TCP), DNS over TLS, admin HTTP (/healthz, /readyz, /metrics):
# unprivileged ports; the chart's Service maps 53 and 853 to them.
EXPOSE 5353/udp 5353/tcp 8853/tcp 8080/tcp
ENTRYPOINT ["/k8gb"]
CMD ["run"]
