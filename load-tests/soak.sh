#!/usr/bin/env bash
# The soak: the whole pipeline (`cartstream all`) for MINUTES at half of its capacity measured in
# the same run, with hostile clients beside it (load-tests/hostile.py: idle connections, request
# heads and bodies trickled, bodies over the limit, forged and garbage webhooks). Every minute it
# samples the daemon's resident memory, open file descriptors, threads and runtime tasks; at the
# end the completeness check of all four topics must pass.
#
#   load-tests/soak.sh [MINUTES]        # default 30
#
# 1. Capacity: a fresh daemon under the topic prefix `calib`, the unpaced scenario
#    scenarios/capacity.toml (20 s, 64 in flight) with its own completeness check.
# 2. The soak: a fresh daemon under the prefix `soak`, paced at half of the acknowledged
#    operations per second of step 1, forged signatures at 5 % of operations besides.
# Writes load-tests/results/soak-<time>/: result.json (the load tool's report), samples.csv (one
# line a minute), hostile.json, summary.json, daemon.log. Exits 1 when the completeness check
# fails, the daemon stops, a hostile client was never ended by the daemon, or the resident memory,
# descriptors or tasks of the last sample exceed those at minute 5 (minute 1 in a run shorter
# than ten minutes) by more than half.
# PROFILE=dev uses debug builds (the capacity is then the debug build's).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
profile=${PROFILE:-release}
scripts/install.sh

if [ "$profile" = release ]; then
    cargo build --quiet --release -p cartstream -p cartstream-load --bins
    bin="${CARGO_TARGET_DIR:-target}/release"
else
    cargo build --quiet -p cartstream -p cartstream-load --bins
    bin="${CARGO_TARGET_DIR:-target}/debug"
fi

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
start_broker
ingress_port=$(free_port)
admin_port=$(free_port)
receiver_port=$(free_port)
out="load-tests/results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# 1. Capacity.
capacity=load-tests/scenarios/capacity.toml
"$bin/cartstream-load" tenants --scenario "$capacity" --out "$work/tenants.toml" \
    --receiver "http://127.0.0.1:$receiver_port"
export CARTSTREAM__TENANTS__FILE="$work/tenants.toml"
# Each daemon in groups of its own: a static member coming back under a new topic prefix would
# otherwise be handed its old assignment.
prefix=calib
export CARTSTREAM__PROCESSOR__GROUP_ID=calib-processor CARTSTREAM__DELIVERY__GROUP_ID=calib-delivery
start_daemon "$bin/cartstream" all "$out/calibration-daemon.log"
mkdir -p "$out/capacity"
"$bin/cartstream-load" run --scenario "$capacity" --ingress "http://127.0.0.1:$ingress_port" \
    --brokers "$brokers" --prefix "$prefix" --processor --receiver "127.0.0.1:$receiver_port" \
    --out "$out/capacity" >"$out/capacity/run.txt"
stop_daemon
rm -rf "$work/state" "$work/delivery"
rate=$(python3 - "$out/capacity/result.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
scenario = report["scenario"]
phase = report["phases"][0]
# Operations, not requests: a journey's order and a re-send add requests to an operation.
per_operation = 1 + scenario["journey_ratio"] + scenario["duplicate_ratio"]
print(max(1, int(phase["acknowledged_per_second"] / per_operation / 2)))
PY
)
echo "capacity: $(sed -n 's/.*"acknowledged_per_second": *\([0-9.]*\).*/\1/p' "$out/capacity/result.json" | head -1) acknowledged requests/s; soaking at $rate operations/s for $minutes min"

# 2. The soak.
cat >"$work/soak.toml" <<EOF
name = "soak"
tenants = 1000
concurrency = 64
providers = ["shopify", "salla", "zid"]
duplicate_ratio = 0.05
invalid_signature_ratio = 0.05
journey_ratio = 0.2

[[phase]]
name = "soak"
rate = $rate
seconds = $((minutes * 60))
EOF
cp "$work/soak.toml" "$out/soak.toml"
prefix=soak
export CARTSTREAM__PROCESSOR__GROUP_ID=soak-processor CARTSTREAM__DELIVERY__GROUP_ID=soak-delivery
start_daemon "$bin/cartstream" all "$out/daemon.log"

sample() {
    local minute=$1 pid=$daemon_pid
    local rss fds threads tasks
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    tasks=$(curl -fsS "http://127.0.0.1:$admin_port/metrics" | awk '/^cartstream_runtime_tasks / {print $2}')
    echo "$minute,$rss,$fds,$threads,${tasks:-}" >>"$out/samples.csv"
}
echo "minute,rss_kib,open_fds,threads,runtime_tasks" >"$out/samples.csv"
(
    sample 0
    for minute in $(seq 1 "$minutes"); do
        sleep 60
        kill -0 "$daemon_pid" 2>/dev/null || exit 0
        sample "$minute"
    done
) &
sampler=$!
python3 load-tests/hostile.py 127.0.0.1 "$ingress_port" $((minutes * 60)) \
    --out "$out/hostile.json" >/dev/null &
hostile=$!

status=0
"$bin/cartstream-load" run --scenario "$work/soak.toml" --ingress "http://127.0.0.1:$ingress_port" \
    --brokers "$brokers" --prefix "$prefix" --processor --receiver "127.0.0.1:$receiver_port" \
    --patience 120s --out "$out" >"$out/run.txt" || status=$?
wait "$hostile" || status=1
wait "$sampler" || true
kill -0 "$daemon_pid" 2>/dev/null || { echo "the daemon stopped during the soak" >&2; status=1; }
stop_daemon

python3 - "$out" "$status" <<'PY' || status=1
import csv, json, sys
out, status = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
hostile = json.load(open(f"{out}/hostile.json"))
report = json.load(open(f"{out}/result.json"))
print("minute  rss MiB  fds  threads  tasks")
for r in rows:
    print(f"{r['minute']:>6}  {int(r['rss_kib']) / 1024:7.1f}  {r['open_fds']:>3}  {r['threads']:>7}  {r['runtime_tasks']:>5}")
problems = []
# Compared with minute 5 (the first minute of a run shorter than ten), once the load is on.
base_minute = 5 if len(rows) > 10 else 1
base = next((r for r in rows if int(r["minute"]) == base_minute), rows[0])
last = rows[-1]
for key in ["rss_kib", "open_fds", "runtime_tasks"]:
    if last[key] and base[key] and float(last[key]) > 1.5 * float(base[key]):
        problems.append(f"{key} grew from {base[key]} at minute {base['minute']} to {last[key]}")
for kind, tally in hostile.items():
    if tally["ended"].get("never ended"):
        problems.append(f"hostile {kind}: {tally['ended']['never ended']} attempts never ended by the daemon")
if not report["completeness_passed"]:
    problems.append("the completeness check failed")
summary = {
    "requests": report["requests"], "acknowledged": report["acknowledged"],
    "statuses": report["statuses"], "completeness_passed": report["completeness_passed"],
    "phase": report["phases"][0], "hostile": hostile, "samples": rows, "problems": problems,
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps({k: summary[k] for k in ["requests", "acknowledged", "statuses", "completeness_passed"]}))
print("hostile:", json.dumps(hostile))
print("problems:", problems or "none")
sys.exit(1 if problems or status else 0)
PY
echo "results: $out"
exit "$status"
