#!/usr/bin/env bash
# Installs what cartstream needs to build and test on Debian: the C toolchain and headers that
# librocksdb's and librdkafka's builds use (librdkafka with TLS and SASL), a Java runtime and
# Maven, Apache Kafka's server from Maven Central into a cache outside the clone
# (scripts/kafka/env.sh names it), schemathesis from PyPI into a virtualenv beside it
# (scripts/schemathesis.env), and for the browser tests Debian's Chromium, Node.js and
# playwright-core from npm (scripts/browser.env; never a browser download of its own). Safe to
# run again: it installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/kafka/env.sh"
. "$here/schemathesis.env"
. "$here/browser.env"

PACKAGES=(build-essential ccache pkg-config cmake zlib1g-dev libclang-dev libssl-dev libsasl2-dev
    openssl python3 python3-venv curl default-jre-headless maven chromium nodejs npm)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# A Java 17+ runtime and Maven installed some other way will do.
if command -v java >/dev/null && java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
    missing=("${missing[@]/default-jre-headless/}")
fi
command -v mvn >/dev/null && missing=("${missing[@]/maven/}")
# Node.js 18+ with npm installed some other way (NodeSource's nodejs carries npm) will do.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}")
    missing=("${missing[@]/npm/}")
fi
read -r -a missing <<<"${missing[*]}"
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

if [ ! -f "$KAFKA_HOME/complete" ]; then
    echo "installing Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (once)"
    rm -rf "$KAFKA_LIBS"
    mvn -B -q -Dstyle.color=never -f "$here/kafka/pom.xml" "-Dkafka.version=$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$KAFKA_LIBS"
    touch "$KAFKA_HOME/complete"
fi

if [ ! -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $SCHEMATHESIS_VENV (once)"
    rm -rf "$SCHEMATHESIS_VENV"
    python3 -m venv "$SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ ! -f "$BROWSER_HOME/complete" ]; then
    echo "installing playwright-core $PLAYWRIGHT_VERSION from npm into $BROWSER_HOME (once)"
    rm -rf "$BROWSER_HOME"
    mkdir -p "$BROWSER_HOME"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$BROWSER_HOME" --no-audit --no-fund \
        --silent "playwright-core@$PLAYWRIGHT_VERSION"
    touch "$BROWSER_HOME/complete"
fi
