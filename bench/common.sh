# shellcheck shell=bash
# Shared by bench/smoke and bench/prelim (sourced, not run).  Needs: BUILD
# (the meson build directory) and WORK (a scratch directory); every
# process started is recorded in PIDS and stopped by bench_cleanup.

PIDS=()

bench_cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}

# bench_pki DIR [rsa|ec]: a throwaway CA, a server certificate for
# IP:127.0.0.1 and a client certificate.
bench_pki() {
	local d=$1 kt=${2:-rsa} k
	mkdir -p "$d"
	case $kt in
	rsa) k=(-newkey rsa:2048) ;;
	ec) k=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
	*) echo "bench_pki: key type rsa or ec" >&2; return 1 ;;
	esac
	openssl req -x509 -nodes "${k[@]}" -keyout "$d/ca.key" \
	    -out "$d/ca.pem" -days 30 -subj "/CN=bench CA" \
	    -addext basicConstraints=critical,CA:TRUE \
	    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	openssl req -nodes "${k[@]}" -keyout "$d/server.key" \
	    -out "$d/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
	    >"$d/server.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" \
	    -CAkey "$d/ca.key" -CAcreateserial -days 30 \
	    -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
	openssl req -nodes "${k[@]}" -keyout "$d/client.key" \
	    -out "$d/client.csr" -subj "/CN=bench client" 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
	openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" \
	    -CAkey "$d/ca.key" -CAcreateserial -days 30 \
	    -extfile "$d/client.ext" -out "$d/client.pem" 2>/dev/null
	chmod 600 "$d"/*.key
	[ -s "$d/server.pem" ] && [ -s "$d/client.pem" ]
}

# bench_free_port: a TCP port below the ephemeral range that no socket
# uses (best effort).
bench_free_port() {
	local p lo
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		if command -v ss >/dev/null; then
			[ -z "$(ss -Htan "( sport = :$p or dport = :$p )")" ] &&
			    break
		elif ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			break
		fi
	done
	echo "$p"
}

# bench_wait_port PORT: wait up to 10 s for a listener.
bench_wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	return 1
}

# bench_stub PKI [args...]: start stubnode with mTLS on a free port; sets
# STUB_PORT and STUB_PID.
bench_stub() {
	local pki=$1 out=$WORK/stub.out
	shift
	"$BUILD/bench/stubnode" -l 127.0.0.1:0 \
	    --tls "$pki/server.pem" "$pki/server.key" "$pki/ca.pem" "$@" \
	    >"$out" 2>"$WORK/stub.err" &
	STUB_PID=$!
	PIDS+=("$STUB_PID")
	for _ in $(seq 100); do
		STUB_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
		[ -n "$STUB_PORT" ] && return 0
		sleep 0.05
	done
	echo "stubnode did not start:" >&2
	cat "$WORK/stub.err" >&2
	return 1
}

# bench_tunnel PKI STUBPORT: start cqltunnel (pinned to the stub node);
# sets TUNNEL_PORT and TUNNEL_PID.  Optional: TUNNEL_TOPOLOGY (pin),
# TUNNEL_WORKERS ([listen] workers, 1), TUNNEL_LOG_LEVEL (warn),
# TUNNEL_NAME (file names in WORK, default cqltunnel, for a second
# instance), TUNNEL_LISTEN_EXTRA (lines added to [listen], e.g.
# "max_connections = 20000"), TUNNEL_CLUSTER_EXTRA (lines added to
# [cluster], e.g. "reuse_connections = no").
bench_tunnel() {
	local pki=$1 sport=$2 name=${TUNNEL_NAME:-cqltunnel}
	local ini=$WORK/$name.ini
	TUNNEL_PORT=$(bench_free_port)
	printf 'cassandra' >"$WORK/password"
	chmod 600 "$WORK/password"
	cat >"$ini" <<EOT
[listen]
address = 127.0.0.1:$TUNNEL_PORT
workers = ${TUNNEL_WORKERS:-1}
${TUNNEL_LISTEN_EXTRA:-}

[cluster]
contact_points = 127.0.0.1:$sport
topology = ${TUNNEL_TOPOLOGY:-pin}
${TUNNEL_CLUSTER_EXTRA:-}

[tls]
ca_file = $pki/ca.pem
cert_file = $pki/client.pem
key_file = $pki/client.key

[auth]
username = cassandra
password_file = $WORK/password

[log]
level = ${TUNNEL_LOG_LEVEL:-warn}
EOT
	"$BUILD/cqltunnel" -c "$ini" 2>"$WORK/$name.err" &
	TUNNEL_PID=$!
	PIDS+=("$TUNNEL_PID")
	if ! bench_wait_port "$TUNNEL_PORT"; then
		cat "$WORK/$name.err" >&2
		return 1
	fi
}
