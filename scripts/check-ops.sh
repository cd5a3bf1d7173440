#!/usr/bin/env bash
# Checks the operations files: the Helm chart (lint, renders with several value sets validated
# against the Kubernetes schemas, the rendered configuration accepted by the daemon, rendering
# without the Kafka address refused), the Prometheus alert rules (promtool check and unit
# tests), the Grafana dashboard (JSON, PromQL, only real metric names), and a real scrape of a
# running daemon (promtool check metrics). Installs what is missing; fails on any problem.
#   scripts/check-ops.sh       (binary: $CARTSTREAM_BIN, else $CARGO_TARGET_DIR/debug/cartstream)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v promtool >/dev/null; then
    echo "installing promtool (Debian package prometheus)"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends prometheus
    # Only promtool is wanted: keep the packaged server from holding port 9090 where systemd
    # started it.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        $sudo systemctl disable --now prometheus
    fi
fi
if ! python3 -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    echo "installing helm-python-sdk (Helm's Go library) and kubernetes-validate"
    python3 -m pip --version >/dev/null 2>&1 || {
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends python3-pip
    }
    tools=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 pyyaml)
    export PIP_ROOT_USER_ACTION=ignore
    # Debian's own Python refuses user packages unless told (PEP 668).
    python3 -m pip install -q "${tools[@]}" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "${tools[@]}"
fi

bin="${CARTSTREAM_BIN:-${CARGO_TARGET_DIR:-target}/debug/cartstream}"
[ -x "$bin" ] || { echo "check-ops: no cartstream binary at $bin (set CARTSTREAM_BIN)" >&2; exit 1; }

chart=helm/cartstream
rules=$chart/alerts/cartstream.rules.yaml

echo "== alert rules"
promtool check rules "$rules"
promtool test rules $chart/alerts/tests/*.yaml

echo "== dashboard: generated, and only real metric names in it and in the alert rules"
python3 scripts/ops/dashboard.py | cmp -s - $chart/dashboards/cartstream.json || {
    echo "$chart/dashboards/cartstream.json differs from what scripts/ops/dashboard.py writes:" >&2
    echo "edit the generator, then: python3 scripts/ops/dashboard.py > $chart/dashboards/cartstream.json" >&2
    exit 1
}
python3 scripts/ops/check_names.py docs/metrics.md $chart/dashboards/cartstream.json "$rules"

echo "== Helm chart"
python3 scripts/ops/check_chart.py "$chart" "$bin"

echo "== a real scrape"
scripts/ops/check_scrape.sh "$bin"

echo "check-ops: all checks passed"
