# Helpers for the scripts that start a broker and the daemon; source it from the repository root
# once `work` names the run's scratch folder:
#   work=$(mktemp -d); . scripts/lib.sh; trap cleanup EXIT

daemon_pid=""
broker_pid=""

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a fresh Apache Kafka broker with its data below $work; sets broker_port, broker_pid and
# brokers (the bootstrap address).
start_broker() {
    broker_port=$(free_port)
    broker_pid=$(scripts/kafka.sh "$broker_port" "$work/broker")
    brokers="127.0.0.1:$broker_port"
}

# Stops the Kafka node with pid $1 (a SIGTERM, then a SIGKILL after 30 s) and waits until it has
# exited, so that its data folder can be removed: it is no child of this shell, `wait` cannot.
stop_kafka() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 150); do
        [ -e "/proc/$pid" ] || return 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    while [ -e "/proc/$pid" ]; do sleep 0.1; done
}

# Waits up to 30 s for the daemon (pid $1) to answer ready on its admin address $2 (host:port).
# If it exits or never gets ready, prints its log ($3, when given) and fails.
wait_ready() {
    local pid=$1 admin=$2 log=${3:-}
    for _ in $(seq 1 150); do
        curl -fs "http://$admin/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if [ -n "$log" ]; then cat "$log" >&2; fi
    echo "$0: the daemon did not become ready at http://$admin/readyz" >&2
    return 1
}

# Starts the daemon — the cartstream binary $1 running role $2 with config/example.toml —
# against Kafka at $brokers under the topic prefix $prefix, listening on $ingress_port and
# $admin_port, its state below $work, its output in the file $3 (on the terminal without one);
# any other CARTSTREAM__… the caller exported applies too. Sets daemon_pid and waits until the
# daemon is ready.
start_daemon() {
    local bin=$1 role=$2 log=${3:-}
    export CARTSTREAM__KAFKA__BROKERS="$brokers"
    export CARTSTREAM__KAFKA__TOPIC_PREFIX="$prefix"
    export CARTSTREAM__INGRESS__LISTEN="127.0.0.1:$ingress_port"
    export CARTSTREAM__ADMIN__LISTEN="127.0.0.1:$admin_port"
    export CARTSTREAM__PROCESSOR__STATE_DIR="$work/state"
    export CARTSTREAM__DELIVERY__STATE_DIR="$work/delivery"
    export CARTSTREAM__TELEMETRY__LOG_FILTER=warn
    if [ -n "$log" ]; then
        "$bin" "$role" --config config/example.toml >"$log" 2>&1 &
    else
        "$bin" "$role" --config config/example.toml &
    fi
    daemon_pid=$!
    wait_ready "$daemon_pid" "127.0.0.1:$admin_port" "$log"
}

# Stops the daemon, if one runs, and waits for it to exit.
stop_daemon() {
    if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null; fi
    daemon_pid=""
}

# For `trap cleanup EXIT`: stops the daemon and the broker, removes $work.
cleanup() {
    stop_daemon || true
    if [ -n "$broker_pid" ]; then stop_kafka "$broker_pid"; fi
    broker_pid=""
    rm -rf "$work"
}

# The median of its numeric arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# CPU seconds process $1 has used so far (user and system, all its threads).
process_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# Alternates $1 rounds of $2 seconds with $3 concurrent requests / records in flight: wrk sending
# the signed Shopify checkout to the ingress of the running daemon (start_daemon … ingress),
# then `cartstream-load ceiling`, a plain idempotent producer sending the very records the
# ingress would produce, to the same topic of the same broker. Needs $bin (the release folder)
# and the files body.json and signature.txt in $work. Prints each round; sets the medians
# ingress_rps, ingress_cpu_us, plain_rps, plain_cpu_us, and produced (records acknowledged by
# the broker in all rounds, both kinds).
ingress_rounds() {
    local rounds=$1 seconds=$2 connections=$3 round line requests before cpu records
    local -a ingress=() ingress_cpu=() plain=() plain_cpu=()
    produced=0
    for round in $(seq 1 "$rounds"); do
        before=$(process_cpu "$daemon_pid")
        line=$(WRK_DATA="$work" wrk -t1 -c"$connections" -d"${seconds}s" --latency \
            -s scripts/load/shopify.lua "http://127.0.0.1:$ingress_port/api/webhooks/shopify" | grep '^wrk:')
        requests=$(echo "$line" | sed -E 's/^wrk: ([0-9]+) requests.*/\1/')
        cpu=$(awk -v a="$before" -v b="$(process_cpu "$daemon_pid")" -v n="$requests" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
        echo "round $round ingress: $line; daemon CPU ${cpu} µs/request"
        case "$line" in *"non-2xx 0"*) ;; *) echo "$0: the ingress answered non-2xx" >&2; return 1 ;; esac
        produced=$((produced + requests))
        ingress+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) requests\/s.*/\1/')")
        ingress_cpu+=("$cpu")
        TIMEFORMAT='%U %S'
        if ! { time "$bin/cartstream-load" ceiling --brokers "$brokers" --topic "$prefix.inbound.v1" \
            --body "$work/body.json" --tenant acme --in-flight "$connections" --seconds "$seconds" >"$work/plain.out"; } 2>"$work/plain.time"; then
            cat "$work/plain.out" "$work/plain.time" >&2
            return 1
        fi
        line=$(cat "$work/plain.out")
        records=$(echo "$line" | sed -E 's/^plain producer: ([0-9]+) records.*/\1/')
        cpu=$(awk -v n="$records" '{ printf "%.1f", ($1 + $2) * 1e6 / n }' "$work/plain.time")
        echo "round $round $line; producer CPU ${cpu} µs/record"
        produced=$((produced + records))
        plain+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) records\/s.*/\1/')")
        plain_cpu+=("$cpu")
    done
    ingress_rps=$(median "${ingress[@]}")
    ingress_cpu_us=$(median "${ingress_cpu[@]}")
    plain_rps=$(median "${plain[@]}")
    plain_cpu_us=$(median "${plain_cpu[@]}")
}
