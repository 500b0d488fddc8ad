#!/usr/bin/env bash
# A throwaway Prosody for validating the test client and for side-by-side benchmarks.
#
#   prosody-server.sh setup DIR [PORT [MODULES]]
#                                        write DIR/prosody.cfg.lua, a self-signed certificate
#                                        and an empty data dir (default port 15222); MODULES,
#                                        space-separated, are enabled on top (e.g. "pep")
#   prosody-server.sh start DIR          start in the background (pid in DIR/prosody.pid)
#   prosody-server.sh stop DIR           stop it
#
# Two virtual hosts on 127.0.0.1: `localhost` stores SCRAM-SHA-256 credentials (offers
# SCRAM-SHA-256 and PLAIN), `sha1.localhost` stores SCRAM-SHA-1 ones (SCRAM-SHA-1, PLAIN).
# PLAIN is allowed without TLS; Nagle is off (see the config). Users one at a time with
# `prosodyctl --config DIR/prosody.cfg.lua register USER HOST PASSWORD`, or in bulk with
# `starling-load prosody-users --data-dir DIR/data ...`.
set -euo pipefail

cmd=${1:?usage: prosody-server.sh setup|start|stop DIR [PORT [MODULES]]}
dir=$(realpath -m "${2:?directory}")
port=${3:-15222}
extra_modules=""
for module in ${4:-}; do
    extra_modules="$extra_modules, \"$module\""
done
cfg="$dir/prosody.cfg.lua"

case "$cmd" in
setup)
    mkdir -p "$dir/data" "$dir/certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,DNS:sha1.localhost" \
        -keyout "$dir/certs/localhost.key" -out "$dir/certs/localhost.crt" 2>/dev/null
    cat >"$cfg" <<LUA
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { { levels = { min = "warn" }, to = "file", filename = "$dir/prosody.log" } }
network_backend = "epoll"
-- Prosody leaves Nagle on by default, which on loopback costs ~40 ms per login (delayed
-- ACKs during the TLS handshake); off, as a tuned deployment would run it.
network_settings = { nagle = false }
interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "version", "posix"$extra_modules }
modules_disabled = { "s2s", "offline" }
ssl = { certificate = "$dir/certs/localhost.crt", key = "$dir/certs/localhost.key" }

VirtualHost "localhost"
    password_hash = "SHA-256"

VirtualHost "sha1.localhost"
    password_hash = "SHA-1"
LUA
    echo "config: $cfg (c2s 127.0.0.1:$port)"
    ;;
start)
    # Prosody keeps one descriptor per session: give it the whole hard limit.
    ulimit -n "$(ulimit -Hn)"
    prosody --config "$cfg" -D
    for _ in $(seq 50); do
        [ -s "$dir/prosody.pid" ] && break
        sleep 0.1
    done
    echo "prosody pid $(cat "$dir/prosody.pid")"
    ;;
stop)
    if [ -s "$dir/prosody.pid" ]; then
        pid=$(cat "$dir/prosody.pid")
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        rm -f "$dir/prosody.pid"
    fi
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
