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
# file matches the crate (binary name, paths, user, entrypoint, Rust version, build context).
#
# Runtime: gcr.io/distroless/cc-debian12:nonroot, which has glibc, libgcc, OpenSSL 3 (libssl3),
# CA certificates (S3 over HTTPS), the tz database (/usr/share/zoneinfo; the binary also embeds
# its zones through chrono-tz, so schedules never depend on it) and the user nonroot (65532). The
# binary links libssl/libcrypto (ssh2 -> libssh2) and zlib dynamically; cc-debian12 lacks zlib, so
# the build stage copies its libz.so.1 (same Debian release, so the same ABI). The build fails if
# the binary ever needs another library the runtime image does not have. For production, pin both
# base images by digest.

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
 && cargo build --release --locked --bin scheduled-exports \
 && rm -rf src benches \
      target/release/scheduled-exports* \
      target/release/deps/scheduled_exports-* \
      target/release/deps/libscheduled_exports-* \
      target/release/.fingerprint/scheduled-exports-*

COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin scheduled-exports

# The shared libraries the runtime image lacks, at the same path as here.
RUN set -eu; \
    binary=target/release/scheduled-exports; \
    ldd "$binary"; \
    unexpected="$(ldd "$binary" | awk '{ print $1 }' | grep -Ev \
      '^(linux-vdso\.so\.1|linux-gate\.so\.1|/lib.*/ld-linux.*\.so\.[0-9]+|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libssl\.so\.3|libcrypto\.so\.3|libz\.so\.1)$' \
      || true)"; \
    if [ -n "$unexpected" ]; then \
      echo "the runtime image has no: $unexpected; add it to the runtime stage" >&2; exit 1; \
    fi; \
    libz="$(ldd "$binary" | awk '$1 == "libz.so.1" { print $3 }')"; \
    mkdir -p /runtime-libs; \
    if [ -n "$libz" ]; then \
      mkdir -p "/runtime-libs/usr/lib/$(gcc -print-multiarch)"; \
      cp -L "$libz" "/runtime-libs/usr/lib/$(gcc -print-multiarch)/libz.so.1"; \
    fi

# --- runtime ------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="scheduled-exports" \
      org.opencontainers.image.description="Kubernetes operator that delivers a daily CSV export of CRM data over SFTP" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /runtime-libs/ /
COPY --from=build /build/target/release/scheduled-exports /usr/local/bin/scheduled-exports
# Export Jobs start `scheduled-exports export ...` by name.
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/scheduled-exports"]
CMD ["controller"]
