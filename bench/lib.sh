# Shared by the bench/*.sh scripts (sourced, from the repository root):
# the build, a scratch folder removed at exit with every process started
# into $pids, free ports, the nginx reference target, and `mspflow dev`.

bench_prepare() {	# installs what bench/ needs, builds release, makes $work
	infra/deps --bench
	[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
	ninja -C build >/dev/null
	work=$(mktemp -d)
	chmod 755 "$work"
	pids=""
	trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx answering GET /healthz with mspflow's body (and a canned chat
# completion): start_nginx PORT WORKERS
start_nginx() {
	cat > "$work/nginx.conf" <<CONF
worker_processes $2;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $work;
	proxy_temp_path $work;
	fastcgi_temp_path $work;
	uwsgi_temp_path $work;
	scgi_temp_path $work;
	server {
		listen 127.0.0.1:$1;
		location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
		# a model that always answers a classify step confidently (bench/engine.sh)
		location = /v1/chat/completions { default_type application/json;
			return 200 '{"id":"b","object":"chat.completion","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"{\\\\"label\\\\":\\\\"standard\\\\",\\\\"confidence\\\\":0.95}"}}]}'; }
	}
}
CONF
	nginx -e "$work/nginx.err" -p "$work" -c "$work/nginx.conf" &
	pids="$pids $!"
}

# `mspflow dev` with its state in $work/state, access log off, ready on
# return: start_dev PORT WORKERS
start_dev() {
	MSPFLOW_WORKERS=$2 MSPFLOW_ACCESS_LOG=false MSPFLOW_LOG_LEVEL=info \
		build/mspflow dev --state "$work/state" --listen "127.0.0.1:$1" --admin-listen= \
		> "$work/dev.out" 2> "$work/dev.err" &
	pids="$pids $!"
	for i in $(seq 1 600); do
		[ -s "$work/state/credentials.json" ] && curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "bench: mspflow dev did not become ready" >&2
	return 1
}
