# Helpers for the scripts that start a broker and the daemon; source it from the repository root:
#   . scripts/lib.sh

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
