# assumed as a container, for docker-compose dev stacks (docs/docker-compose.md).
#
#   docker build -t assumed .
#   docker build --build-arg UID=$(id -u) --build-arg GID=$(id -g) -t assumed .
#
# The second form runs the daemon as your own uid, so it can read the ~/.aws
# you mount into it (credentials and the SSO cache are 0600 files).
#
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on
# Docker 20.10) for the cache mounts. There is deliberately no `# syntax=`
# line: the frontend built into Docker >= 20.10 understands everything here,
# and a syntax image would have to be pulled from a registry on every build.
#
# The base images are arguments, so the build also works from local copies
# (the test suite makes them offline, tests/docker/base-images.sh):
#   BUILD_IMAGE    where the binary is compiled (a Rust toolchain)
#   RUNTIME_IMAGE  the final stage: glibc and CA certificates, no shell
# and BINARY=prebuilt takes the binary from the build context (PREBUILT, a
# path in it) instead of compiling it: a binary built on a Debian 12 host.
# The final stage is the same either way.

ARG RUST_VERSION=1.95
ARG BUILD_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12
ARG BINARY=build

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is
# copied out of the target dir because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin assumed \
    && install -D -m 0755 target/release/assumed /out/bin/assumed

FROM ${BUILD_IMAGE} AS prebuilt
ARG PREBUILT=target/release/assumed
COPY ${PREBUILT} /out/bin/assumed

# BINARY names one of the two stages above; BuildKit builds only that one.
FROM ${BINARY} AS binary
# The mount point of the token volume. A named volume starts as a copy of it,
# owner and mode included, and the daemon refuses a token directory that is
# not 0700 and its own (src/token.rs).
RUN install -d -m 0700 /out/run/assumed

# Distroless: glibc and CA certificates (STS is https), no shell, no curl.
FROM ${RUNTIME_IMAGE}
ARG UID=65532
ARG GID=65532
COPY --from=binary /out/bin/assumed /usr/local/bin/assumed
# Copying the parent keeps the directory's 0700; --chown makes it the daemon's.
COPY --from=binary --chown=${UID}:${GID} /out/run/ /run/
# Config and ~/.aws are mounted read-only (see examples/compose/docker-compose.yml).
ENV ASSUMED_CONFIG=/etc/assumed/config.toml \
    HOME=/home/assumed
USER ${UID}:${GID}
EXPOSE 80
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/assumed", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/assumed"]
CMD ["serve"]
