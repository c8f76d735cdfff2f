# syntax=docker/dockerfile:1.7
#
# The `ticketing` image: one binary that runs any component (`ticketing serve <component>`),
# the install hook (`ticketing init`) and the operator commands. The Helm chart in
# infra/helm/ticketing runs it.
#
#   docker buildx build -t registry.example.com/shop/ticketing:0.1.0 .
#
# Build stage: Debian bookworm with the Rust toolchain. librdkafka is compiled from the
# vendored sources by rdkafka-sys (./configure + make, C compiler), zlib is built from source
# and linked statically (LIBZ_SYS_STATIC=1), so the binary needs only glibc, libgcc and, for
# TLS builds of librdkafka, libssl at run time. cmake is there for aws-lc-sys (rustls, used by
# the registry-tls feature) should it fall back from its cc build; libssl-dev and pkg-config
# for a librdkafka built with its `ssl` feature.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG CARGO_FEATURES="registry-tls kafka-tls"
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        g++ make perl pkg-config cmake libssl-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    LIBZ_SYS_STATIC=1
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates. target/ is a cache, so the binary is
# copied out in the same step.
RUN --mount=type=cache,id=ticketing-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ticketing-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=ticketing-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p ticketing --features "${CARGO_FEATURES}" \
 && install -D -m 0755 target/release/ticketing /out/ticketing

# Runtime stage: distroless "cc" (glibc, libgcc, libstdc++, libssl, CA certificates, tzdata;
# no shell, no package manager), user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="ticketing" \
      org.opencontainers.image.description="Event-sourced ticket marketplace on a Kafka-API log" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build --chown=0:0 --chmod=0755 /out/ticketing /usr/local/bin/ticketing
# Listen on every interface; keep local state (the generated JWT key when JWT_KEY is unset)
# in /tmp, the one writable place when the root filesystem is mounted read-only.
ENV TICKETING_ADDR=0.0.0.0:8080 \
    TICKETING_DATA_DIR=/tmp \
    LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
# Orchestrators probe GET /healthz and /readyz (the chart does); the image has no shell or
# HTTP client to run a Docker HEALTHCHECK with.
# checkov:skip=CKV_DOCKER_2: Kubernetes ignores HEALTHCHECK and probes /healthz, /readyz itself
ENTRYPOINT ["ticketing"]
CMD ["--help"]
