# The scheduled-exports image: one binary that is both the operator (`controller`, the default
# command) and what its export Jobs run (`scheduled-exports export ...`, found on PATH).
#
# Build from the repository root (Docker with BuildKit, or Podman/Buildah):
#
#   docker build -t scheduled-exports:0.1.0 .
#
# then push it and give the operator its name: Helm value `image`, or `--image` / EXPORT_IMAGE for
# a controller started by hand (the export Jobs run the same image). Other architectures build the
# same way (`docker buildx build --platform linux/arm64 ...`). tests/dockerfile.rs checks that this
# file matches the crate (binary name, paths, user, entrypoint, Rust version, build context) and
# that tests/testbed/image/build, which builds this image for the test bed, follows the same recipe.
#
# Runtime: no base image. The `rootfs` stage unpacks a few Debian bookworm packages (glibc, libgcc,
# OpenSSL 3, zlib, CA certificates, netbase; see tests/testbed/image/packages) into /rootfs with
# tests/testbed/image/assemble, the script the test bed builds its image with too, adds the users
# root, nobody and nonroot (65532), and checks that there is no shell or package manager and that the
# binary starts there as 65532 (every shared library it links resolves inside). The final stage is
# that directory FROM scratch: what gcr.io/distroless/cc-debian12:nonroot offers this binary, from
# the same Debian release as the builder (same ABI), and nothing else. Time zones come from the
# binary itself (chrono-tz), so there is no tz database. For production, pin the base images by
# digest.

# --- build: the release binary -------------------------------------------------------------------
FROM docker.io/library/rust:1.95-bookworm AS build
# Headers and pkg-config for libssh2-sys/openssl-sys/libz-sys (already in rust:bookworm; listed so
# the build does not depend on that).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Dependencies first, against stub sources, so that editing src/ rebuilds only this crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/export.rs \
 && echo 'fn main() {}' > benches/sftp_ciphers.rs \
 && cargo build --release --locked --bin scheduled-exports \
 && rm -rf src benches \
      target/release/scheduled-exports* \
      target/release/deps/scheduled_exports-* \
      target/release/deps/libscheduled_exports-* \
      target/release/.fingerprint/scheduled-exports-*

COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin scheduled-exports

# --- rootfs: the runtime's files, from Debian packages ------------------------------------------
FROM docker.io/library/debian:bookworm-slim AS rootfs
COPY tests/testbed/image/assemble tests/testbed/image/packages /image/
COPY tests/testbed/image/rootfs/ /image/rootfs/
RUN /image/assemble /rootfs /debs
COPY --from=build /build/target/release/scheduled-exports /rootfs/usr/local/bin/scheduled-exports
RUN /image/assemble --check /rootfs /usr/local/bin/scheduled-exports --help

# --- runtime ------------------------------------------------------------------------------------
FROM scratch AS runtime
LABEL org.opencontainers.image.title="scheduled-exports" \
      org.opencontainers.image.description="Kubernetes operator that delivers a daily CSV export of CRM data over SFTP" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=rootfs /rootfs/ /
# Export Jobs start `scheduled-exports export ...` by name.
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /home/nonroot
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/scheduled-exports"]
CMD ["controller"]
