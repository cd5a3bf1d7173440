#!/usr/bin/env bash
# Installs what cartstream needs to build and test on Debian: the C toolchain and headers that
# librdkafka's build uses, and the tansu broker (a Kafka-compatible broker written in Rust).
# Safe to run again: it installs only what is missing.
set -euo pipefail

TANSU_VERSION=0.6.0
PACKAGES=(build-essential pkg-config cmake zlib1g-dev libclang-dev python3 curl)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing system packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for component in rustfmt clippy; do
    cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done

if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "installing the tansu broker $TANSU_VERSION (about ten minutes, once)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi
