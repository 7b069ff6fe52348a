# The hookguard image the chart deploys (values: image.repository, image.tag): the release binary
# on distroless, running as UID/GID 65532, with the binary as entrypoint so that the chart's
# `args: [serve, ...]` are hookguard's arguments. Needs BuildKit (the default builder of Docker 23
# and later) for the cache mounts:
#
#   docker build -t ghcr.io/hookguard/hookguard:0.1.0 .
#
# Not built or tested where hookguard is developed: that machine has no access to a container
# registry (neither the base images below nor a push target). The e2e suite runs the binary cargo
# builds with the Deployment's exact arguments instead (tests/e2e/chart/container.rs).

# Builder: Debian bookworm, the same glibc as the runtime image below.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the binary is copied out
# because the target mount does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hookguard \
    && install -D -m 0755 target/release/hookguard /out/hookguard

# Runtime: glibc and CA certificates, no shell, no package manager; user nonroot = 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/hookguard /usr/local/bin/hookguard
USER 65532:65532
# 8443: webhook (HTTPS); 8080: admin (/livez, /readyz, /metrics).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/hookguard"]
CMD ["serve"]
