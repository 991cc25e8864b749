# The Sluice image for machines with Docker (or any BuildKit builder). scripts/image builds the same
# image without a daemon: both run scripts/image-rootfs on the freshly built binary, so the runtime
# contents are the same (the binary, exactly the libraries `ldd` lists, CA certificates, passwd and
# group with the nonroot user 65532, /tmp), as are the user and the entrypoint.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .

FROM rust:1.95-bookworm AS build
# The native build dependencies scripts/setup installs (rdkafka's bundled librdkafka and OpenSSL).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev libzstd-dev libcurl4-openssl-dev binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# rust-toolchain.toml pins the toolchain; cargo --locked builds exactly Cargo.lock.
RUN cargo build --locked --release --bin sluice \
 && scripts/image-rootfs target/release/sluice /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# The one directory the nonroot user owns (COPY alone would make it root's).
COPY --from=build --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
