# The hookguard image the chart deploys (values: image.repository, image.tag): the release binary
# on distroless, running as UID/GID 65532, with the binary as entrypoint so that the chart's
# `args: [serve, ...]` are hookguard's arguments. Needs BuildKit (the default builder of Docker 23
# and later) for the cache mounts:
#
#   docker build -t ghcr.io/hookguard/hookguard:0.1.0 .
#
# Needs registry access for the base images below. Where there is none, `make image-offline`
# builds the same layout (static binary, UID/GID 65532, binary as entrypoint, CA certificates)
# as an OCI archive; that is the image the real-node suite (make e2e-real-node) installs with the
# chart and runs. This Dockerfile itself is not built where hookguard is developed.

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
