#!/usr/bin/env bash
# Messages accepted per second over loopback: Elit, Postfix and chasquid
# side by side, Postfix's smtp-source as the load generator (1, 10, 50
# concurrent connections; 4 KiB and 100 KiB messages). Every server fsyncs
# what it acknowledges. Prints a Markdown table.
#
# Everything runs inside a new network namespace that has only loopback, so
# no server can reach another address; a DNS server of ours on loopback
# (internal/cmd/benchdns) answers the checks of received mail.
# Called by scripts/bench.sh (make bench); needs root for the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
	scripts/deps.sh smtp-source:postfix chasquid:chasquid openssl:openssl unshare:util-linux ip:iproute2
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench-smtp: needs root (a private network namespace, and Postfix runs as root)" >&2
		exit 1
	fi
	go build -o bin/elit ./elit/cmd/elit
	go build -o bin/benchdns ./internal/cmd/benchdns
	exec unshare -n "$0" --inside
fi

ip link set lo up
W=$(mktemp -d /var/tmp/elit-bench.XXXXXX)
chmod 755 "$W" # Postfix's daemons run as the postfix user
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	postfix -c "$W/postfix" stop >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

# The sender's domain: SPF passes for loopback, a DMARC record, a PTR.
bin/benchdns -addr 127.0.0.1:5300 <<ZONE &
example.net. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.example.net. 60 IN TXT "v=DMARC1; p=none"
1.0.0.127.in-addr.arpa. 60 IN PTR client.example.net.
client.example.net. 60 IN A 127.0.0.1
ZONE
pids+=($!)

runs=${BENCH_RUNS:-5}
# chasquid refuses mail (451) with more than 200 messages in its queue, so
# each run sends 200 and the queue is let drain before the next.
msgs=200
cases=("1 4096" "10 4096" "50 4096" "1 102400" "10 102400" "50 102400")

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-smtp: nothing listens on $1" >&2
	return 1
}

drain() {
	for _ in $(seq 300); do
		[ -z "$(ls -A "$W/chasquid-data/queue" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
}

# rate PORT SESSIONS SIZE: messages per second, median of runs ("failed"
# when the server refused some).
rate() {
	local port=$1 sessions=$2 size=$3 r=()
	for _ in $(seq "$runs"); do
		local t0 t1
		drain
		t0=$(date +%s.%N)
		if ! smtp-source -d -s "$sessions" -m "$msgs" -l "$size" -f bench@example.net -t din@example.org \
			-M client.example.net "127.0.0.1:$port" >/dev/null 2>"$W/source.err"; then
			echo "failed: $(head -1 "$W/source.err")"
			return
		fi
		t1=$(date +%s.%N)
		r+=("$(echo "$msgs / ($t1 - $t0)" | bc -l)")
	done
	printf '%s\n' "${r[@]}" | sort -n | awk '{v[NR] = $1} END {printf "%.0f", v[int((NR + 1) / 2)]}'
}

# Elit: the demo-style database, the queue in $W.
mkdir -p "$W/elit"
echo '[{"name":"din","mailboxes":["romain@example.com"]}]' >"$W/elit/users.json"
bin/elit serve -domain example.org -hostname bench.example.org -db-json "$W/elit/users.json" \
	-state "$W/elit/state" -mx-addr 127.0.0.1:2501 -submission-addr "" -submissions-addr "" \
	-max-conns-per-ip 200 -deliver=false -resolver 127.0.0.1:5300 -log-level warn \
	-mail-checks=false -arc=false -dkim=false 2>"$W/elit.log" & # as the peers: no checks, no signing
pids+=($!)

# Postfix: a private instance whose smtpd puts every message on hold, so
# the figure is reception alone, as for Elit.
mkdir -p "$W/postfix" "$W/postfix-queue" "$W/postfix-data"
chown postfix "$W/postfix-data"
cat >"$W/postfix/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $W/postfix-queue
data_directory = $W/postfix-data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.example.org
mydestination = example.org
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
smtpd_client_restrictions = check_client_access static:HOLD
smtpd_client_connection_count_limit = 0
default_process_limit = 100
maillog_file = $W/postfix.log
EOF
master=/etc/postfix/master.cf
[ -f "$master" ] || master=/usr/share/postfix/master.cf.dist # "No configuration" installs
sed -e 's/^smtp \{1,\}inet .*/127.0.0.1:2502 inet n - n - - smtpd/' "$master" | grep -v '^postlog ' >"$W/postfix/master.cf"
echo 'postlog unix-dgram n - n - 1 postlogd' >>"$W/postfix/master.cf"
postfix -c "$W/postfix" start >/dev/null

# chasquid: a local user whose mail a no-op delivery agent takes, since
# chasquid has no hold queue.
C=$W/chasquid
mkdir -p "$C/certs/bench.example.org" "$C/domains/example.org" "$W/chasquid-data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.example.org \
	-keyout "$C/certs/bench.example.org/privkey.pem" -out "$C/certs/bench.example.org/fullchain.pem" 2>/dev/null
cat >"$C/chasquid.conf" <<EOF
hostname: "bench.example.org"
smtp_address: "127.0.0.1:2503"
submission_address: "127.0.0.1:2504"
submission_over_tls_address: "127.0.0.1:2505"
monitoring_address: ""
mail_delivery_agent_bin: "/bin/true"
data_dir: "$W/chasquid-data"
mail_log_path: "$W/chasquid-mail.log"
EOF
chasquid-util -C="$C" user-add din@example.org --password=benchpw >/dev/null
chasquid -config_dir "$C" -logfile "$W/chasquid.log" &
pids+=($!)

wait_port 2501
wait_port 2502
wait_port 2503

echo "| connections | message | Elit msg/s | Postfix msg/s | chasquid msg/s |"
echo "|---:|---:|---:|---:|---:|"
for c in "${cases[@]}"; do
	read -r sessions size <<<"$c"
	printf '| %s | %s KiB | %s | %s | %s |\n' "$sessions" "$((size / 1024))" \
		"$(rate 2501 "$sessions" "$size")" "$(rate 2502 "$sessions" "$size")" "$(rate 2503 "$sessions" "$size")"
done
queued=$(find "$W/elit/state/queue" -name '*.q' | wc -l)
held=$(find "$W/postfix-queue/hold" -type f | wc -l)
echo
echo "Check: Elit queued $queued messages, Postfix held $held."

# Relay: smtp-source → Elit (MX, a list of one outside mailbox, SRS on) →
# smtp-sink as smarthost. Timed until Elit's queue is empty again.
[ "${BENCH_RELAY:-1}" = 1 ] || exit 0
smtp-sink -u nobody 127.0.0.1:2510 200 &
pids+=($!)
wait_port 2510
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
relay_n=${RELAY_MESSAGES:-2000}
echo
echo "| relayed | message | connections in | authentication | msg/s end to end | CPU s / 1000 msg | peak RSS |"
echo "|---:|---:|---:|---|---:|---:|---:|"
# relay PORT AUTH FLAGS...: one Elit relaying to the sink, each size.
relay() {
	local port=$1 auth=$2 state=$W/relay-$1
	shift 2
	bin/elit serve -domain example.org -hostname relay.example.org -db-json "$W/elit/users.json" \
		-state "$state" -mx-addr "127.0.0.1:$port" -submission-addr "" -submissions-addr "" \
		-max-conns-per-ip 200 -smarthost 127.0.0.1:2510 -resolver 127.0.0.1:5300 -log-level warn "$@" 2>"$W/relay-$port.log" &
	local pid=$!
	pids+=($pid)
	wait_port "$port"
	if [ "$auth" = on ]; then # the DKIM key, made at the first start
		for _ in $(seq 300); do [ -n "$(ls "$state/dkim/example.org" 2>/dev/null)" ] && break; sleep 0.1; done
	fi
	for size in 4096 102400; do
		local c0 t0 t1 c1 hz rss
		c0=$(ticks "$pid")
		t0=$(date +%s.%N)
		smtp-source -d -s 10 -m "$relay_n" -l "$size" -f bench@example.net -t din@example.org \
			-M client.example.net "127.0.0.1:$port" >/dev/null
		for _ in $(seq 3000); do
			[ -z "$(find "$state/queue" -name '*.q' -print -quit)" ] && break
			sleep 0.05
		done
		t1=$(date +%s.%N)
		c1=$(ticks "$pid")
		hz=$(getconf CLK_TCK)
		rss=$(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status")
		printf '| %s | %s KiB | 10 | %s | %.0f | %.2f | %s |\n' "$relay_n" "$((size / 1024))" "$auth" \
			"$(echo "$relay_n / ($t1 - $t0)" | bc -l)" "$(echo "($c1 - $c0) / $hz / $relay_n * 1000" | bc -l)" "$rss"
	done
	kill "$pid"
}
relay 2511 off -mail-checks=false -arc=false -dkim=false
relay 2512 on
