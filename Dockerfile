# cartstream container image: a release build on Debian, stripped (scripts/dist.sh), run on
# debian-slim as a non-root user.
#   docker build -t cartstream:0.1.0 .
# The Helm chart (helm/cartstream) runs it with a read-only root file system; the processor's
# static membership needs /bin/sh, which debian-slim has.

FROM rust:1-slim-bookworm AS build
# What librdkafka's (with TLS and SASL) and RocksDB's builds need (as in scripts/install.sh).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config cmake zlib1g-dev libclang-dev libssl-dev libsasl2-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/dist.sh /usr/local/lib/cartstream \
    && cp /usr/local/lib/cartstream/cartstream /usr/local/bin/cartstream

FROM debian:bookworm-slim
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates libstdc++6 zlib1g libssl3 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cartstream \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cartstream \
    && mkdir -p /var/lib/cartstream \
    && chown 10001:10001 /var/lib/cartstream
COPY --from=build /usr/local/bin/cartstream /usr/local/bin/cartstream
USER 10001:10001
# Ingress and admin ports; the chart sets both to listen on 0.0.0.0.
EXPOSE 8080 9090
ENTRYPOINT ["cartstream"]
CMD ["all"]
