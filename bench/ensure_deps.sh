#!/bin/sh
# Make sure the Debian packages the bench compares against are there: redis-server (with TLS)
# and the openssl CLI. Installs redis-server only if it is missing and we are root; otherwise
# says what to install. Redis missing is not fatal: the fan-out runs labchat alone.
missing=""
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing$missing (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null || {
        apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null; }
else
    echo "bench: missing$missing; install with: sudo apt-get install -y$missing" >&2
fi
exit 0
