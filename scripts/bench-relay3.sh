#!/usr/bin/env bash
# The relay end to end, Elit, Postfix and chasquid side by side: our load
# generator (internal/cmd/loadgen) sends MESSAGES messages of SIZE bytes
# over SESSIONS concurrent sessions, PER messages over each connection
# (default 1: a new connection per message), to din@example.org, which
# each server forwards to one outside mailbox, romain@example.com;
# smtp-sink on 127.0.0.2:25 takes the relayed mail and counts it (not on
# 127.0.0.1, where the servers listen: Postfix would see a loop). A run is
# timed until the sink has all MESSAGES. Each server starts afresh in a
# throwaway directory for each run; ROUNDS rounds (default 3), the order
# of the servers rotated each round. Prints one Markdown table: msg/s end
# to end and accepted (answered 250 after DATA, as the client saw it),
# CPU s per 1000 messages (user+system of all the server's processes),
# p50 and p99 latency from the end of DATA to the reply (medians of the
# rounds), peak memory (PSS summed over the server's processes, sampled
# every 0.2 s; the highest of the rounds), fsyncs per message (fsync,
# fdatasync, syncfs, sync and sync_file_range calls counted by strace over
# every process of the server in one more, untimed run of at most 500
# messages), and Elit's ratio to each peer; then a row for smtp-sink
# alone (the load generator straight to the sink: a server that stores
# and forwards nothing, the floor of this machine and client), each
# server's time per message over that floor, and a check line of the
# messages the sink got from each server.
#
#	scripts/bench-relay3.sh SIZE MESSAGES SESSIONS [PER]
#
# KEEP=1 keeps the working directory (logs, queues) for a look afterwards;
# WAITS is how many 20 ms waits for the sink after the load generator (6000).
# TMPFS=1 puts the working directory (every server's queue) on a tmpfs,
# where a sync costs next to nothing: what each server does without the
# disk, to tell its own work from the device's (not a durable setting).
# ELIT_FLAGS: more flags for elit serve (to try a setting).
# PROFILE=FILE: Elit writes its CPU profile of each timed round there
# (ELIT_CPUPROFILE; the last round's stays).
#
# How each relays:
#   - Elit: -smarthost 127.0.0.2:25, mail checks, ARC and DKIM off (as the
#     peers: no checks, no signing), SRS on for the forward (its default);
#   - Postfix: a private instance, virtual_alias_maps forwarding din, relayhost
#     [127.0.0.2]:25, default durability (queue files fsynced);
#   - chasquid (1.11 has no smarthost): an alias; it looks up example.com's
#     MX, which our DNS (internal/cmd/benchdns on 127.0.0.1:53, made the
#     resolver by a private /etc/resolv.conf) points at 127.0.0.2.
# Everything runs in a new network and mount namespace with loopback only,
# as scripts/bench-smtp.sh; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
	size=${1:?usage: bench-relay3.sh SIZE MESSAGES SESSIONS}
	n=${2:?messages}
	sessions=${3:?sessions}
	per=${4:-1}
	scripts/deps.sh smtp-sink:postfix chasquid:chasquid openssl:openssl unshare:util-linux ip:iproute2 strace:strace
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench-relay3: needs root (private namespaces, and Postfix runs as root)" >&2
		exit 1
	fi
	go build -o bin/elit ./elit/cmd/elit
	go build -o bin/benchdns ./internal/cmd/benchdns
	go build -o bin/loadgen ./internal/cmd/loadgen
	exec unshare -n -m "$0" --inside "$size" "$n" "$sessions" "$per"
fi
size=$2
n=$3
sessions=$4
per=$5
rounds=${ROUNDS:-3}

ip link set lo up
W=$(mktemp -d /var/tmp/elit-relay3.XXXXXX)
[ -n "${TMPFS:-}" ] && mount -t tmpfs -o size=2g tmpfs "$W" # this mount namespace only
chmod 755 "$W" # Postfix's daemons run as the postfix user
echo 'nameserver 127.0.0.1' >"$W/resolv.conf"
mount --bind "$W/resolv.conf" /etc/resolv.conf # this mount namespace only
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for d in "$W"/run-postfix-*; do
		[ -d "$d" ] && postfix -c "$d/etc" stop >/dev/null 2>&1 || true
	done
	wait 2>/dev/null || true
	[ -n "${TMPFS:-}" ] && [ -z "${KEEP:-}" ] && umount "$W"
	[ -n "${KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT

bin/benchdns -addr 127.0.0.1:53 <<ZONE &
example.net. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.example.net. 60 IN TXT "v=DMARC1; p=none"
1.0.0.127.in-addr.arpa. 60 IN PTR client.example.net.
client.example.net. 60 IN A 127.0.0.1
example.com. 60 IN MX 10 mx.example.com.
mx.example.com. 60 IN A 127.0.0.2
ZONE
pids+=($!)

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-relay3: nothing listens on $1" >&2
	return 1
}

# tree PID: PID and all its descendants.
tree() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			for (p in parent) {
				q = p
				while (q != "" && q != root && q > 1) q = parent[q]
				if (q == root) print p
			}
		}'
}
# cputicks PID: user+system of PID's tree, its reaped children included.
cputicks() {
	local t=0 p
	for p in $(tree "$1"); do
		t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
# pss PID: PSS in kB summed over PID's tree.
pss() {
	local p
	for p in $(tree "$1"); do
		awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true
	done | awk '{s += $1} END {print s + 0}'
}
# sample PID FILE: the highest pss of PID's tree into FILE until killed.
sample() {
	local max=0 v
	while :; do
		v=$(pss "$1")
		[ "$v" -gt "$max" ] && max=$v && echo "$max" >"$2"
		sleep 0.2
	done
}
# sinkcount FILE: the messages smtp-sink -c has counted (its last
# counter line, at the end of FILE).
sinkcount() { tail -c 300 "$1" | tr '\r' '\n' | awk -F'mesg=' 'NF > 1 {m = $2} END {print m + 0}'; }

users='[{"name":"din","mailboxes":["romain@example.com"]}]'

# start_SERVER DIR: starts the server with its state in DIR, listening on
# 127.0.0.1:2525; sets spid to the pid whose tree is the server.
start_elit() {
	echo "$users" >"$1/users.json"
	ELIT_CPUPROFILE=$prof bin/elit serve -domain example.org -hostname relay.example.org -db-json "$1/users.json" \
		-state "$1/state" -mx-addr 127.0.0.1:2525 -submission-addr "" -submissions-addr "" -http-addr "" \
		-max-conns-per-ip 200 -smarthost 127.0.0.2:25 -resolver 127.0.0.1:53 -log-level warn \
		-mail-checks=false -arc=false -dkim=false ${ELIT_FLAGS:-} >"$1/elit.log" 2>&1 &
	spid=$!
}
start_postfix() {
	local d=$1
	mkdir -p "$d/etc" "$d/queue" "$d/data"
	chown postfix "$d/data"
	cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.example.org
mydestination =
mynetworks = 127.0.0.0/8
virtual_alias_domains = example.org
virtual_alias_maps = inline:{ { din@example.org = romain@example.com } }
relayhost = [127.0.0.2]:25
alias_maps =
alias_database =
smtpd_client_connection_count_limit = 0
default_process_limit = 100
maillog_file = $d/postfix.log
EOF
	local master=/etc/postfix/master.cf
	[ -f "$master" ] || master=/usr/share/postfix/master.cf.dist
	# No chroot (the throwaway queue has no copy of /etc); smtpd on 2525.
	sed -e 's/^smtp \{1,\}inet .*/127.0.0.1:2525 inet n - n - - smtpd/' "$master" | grep -v '^postlog ' |
		awk '/^[a-z]/ && $5 == "y" {$5 = "n"} {print}' >"$d/etc/master.cf"
	echo 'postlog unix-dgram n - n - 1 postlogd' >>"$d/etc/master.cf"
	postfix -c "$d/etc" start >/dev/null 2>"$d/start.err"
	for _ in $(seq 100); do
		[ -s "$d/queue/pid/master.pid" ] && break
		sleep 0.1
	done
	spid=$(tr -d ' \n' <"$d/queue/pid/master.pid")
}
start_chasquid() {
	local c=$1/etc
	mkdir -p "$c/certs/relay.example.org" "$c/domains/example.org" "$1/data"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=relay.example.org \
		-keyout "$c/certs/relay.example.org/privkey.pem" -out "$c/certs/relay.example.org/fullchain.pem" 2>/dev/null
	cat >"$c/chasquid.conf" <<EOF
hostname: "relay.example.org"
smtp_address: "127.0.0.1:2525"
submission_address: "127.0.0.1:2526"
submission_over_tls_address: "127.0.0.1:2527"
monitoring_address: ""
mail_delivery_agent_bin: "/bin/true"
data_dir: "$1/data"
mail_log_path: "$1/mail.log"
EOF
	echo 'din: romain@example.com' >"$c/domains/example.org/aliases"
	chasquid -config_dir "$c" -logfile "$1/chasquid.log" >"$1/chasquid.out" 2>&1 &
	spid=$!
}
stop_server() { # SERVER DIR PID
	case $1 in
	postfix) postfix -c "$2/etc" stop >/dev/null 2>&1 || true ;;
	*) kill "$3" 2>/dev/null || true ;;
	esac
	for _ in $(seq 100); do
		kill -0 "$3" 2>/dev/null || break
		sleep 0.1
	done
	wait "$3" 2>/dev/null || true
}

# run SERVER ROUND: one timed run; appends "rate cpu pss delivered
# accepted-rate p50 p99 refused" to $W/SERVER.results. ROUND "strace": an untimed
# run of at most 500 messages under strace; appends the fsyncs per
# message to $W/SERVER.fsyncs.
run() {
	local s=$1 d=$W/run-$1-$2 pid sink smp c0 c1 t0 t1 got=0 pss m=$n st="" out acc addr=127.0.0.1:2525
	[ "$2" = strace ] && m=$((n < 500 ? n : 500))
	prof=""
	[ "$2" != strace ] && prof=${PROFILE:-}
	mkdir -p "$d"
	smtp-sink -u nobody -c -h sink.example.com 127.0.0.2:25 200 >"$d/sink.out" &
	sink=$!
	pids+=("$sink")
	wait_port 25 127.0.0.2
	if [ "$s" = sink ]; then
		pid=$sink
		addr=127.0.0.2:25
	else
		"start_$s" "$d"
		pid=$spid
		pids+=("$pid")
		wait_port 2525
	fi
	sleep 1 # settled
	if [ "$2" = strace ]; then
		strace -f -qq -c -o "$d/strace" -e trace=fsync,fdatasync,syncfs,sync,sync_file_range \
			$(tree "$pid" | sed 's/^/-p /') &
		st=$!
		pids+=("$st")
		sleep 1 # attached
	fi
	echo 0 >"$d/pss"
	sample "$pid" "$d/pss" &
	smp=$!
	pids+=("$smp")
	c0=$(cputicks "$pid")
	t0=$(date +%s.%N)
	out=$(bin/loadgen -addr "$addr" -n "$m" -sessions "$sessions" -per "$per" -size "$size" \
		-from bench@example.net -to din@example.org -helo client.example.net 2>"$d/source.err") || true
	# A server may refuse mail (chasquid 1.11 answers 451 while its
	# queue holds 200 messages): the run waits for what it accepted.
	acc=$(field accepted "$out")
	for _ in $(seq "${WAITS:-6000}"); do # at most 2 minutes more
		got=$(sinkcount "$d/sink.out")
		[ "$got" -ge "$acc" ] && break
		sleep 0.02
	done
	t1=$(date +%s.%N)
	c1=$(cputicks "$pid")
	kill "$smp"
	wait "$smp" 2>/dev/null || true
	if [ -n "$st" ]; then
		kill -INT "$st"
		wait "$st" 2>/dev/null || true
		awk -v m="$m" '$NF ~ /^(fsync|fdatasync|syncfs|sync|sync_file_range)$/ {c += $4} END {printf "%.2f\n", c / m}' \
			"$d/strace" >>"$W/$s.fsyncs"
	fi
	[ "$s" = sink ] || stop_server "$s" "$d" "$pid"
	sleep 0.3
	kill "$sink"
	wait "$sink" 2>/dev/null || true
	got=$(sinkcount "$d/sink.out")
	if [ -z "$st" ]; then
		# The sampler may not have written a figure yet (a very short
		# run): 0 keeps the columns in place (the table takes the
		# highest round).
		pss=$(cat "$d/pss" 2>/dev/null || true)
		echo "$(echo "$got / ($t1 - $t0)" | bc -l) $(echo "($c1 - $c0) / $(getconf CLK_TCK) / $m * 1000" | bc -l) ${pss:-0} $got" \
			"$(field rate "$out") $(field p50_ms "$out") $(field p99_ms "$out") $(field failed "$out")" >>"$W/$s.results"
	fi
	if [ "$got" -ne "$acc" ] || [ "$acc" -ne "$m" ]; then
		echo "bench-relay3: $s round $2: $acc of $m accepted, the sink got $got" >&2
		head -3 "$d/source.err" >&2
	fi
}
# field NAME LINE: the value of NAME=value in loadgen's LINE (0 if none).
field() { echo "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {v = $2} END {print v + 0}'; }

servers=(elit postfix chasquid)
all=(elit postfix chasquid sink)
for r in $(seq "$rounds"); do
	for i in 0 1 2 3; do
		run "${all[$(((r - 1 + i) % 4))]}" "$r"
	done
done
for s in "${servers[@]}"; do
	run "$s" strace
done

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
col() { awk -v c="$2" '{print $c}' "$W/$1.results"; }
declare -A rate cpu mem acc p50 p99 fs
for s in "${all[@]}"; do
	rate[$s]=$(col "$s" 1 | median)
	cpu[$s]=$(col "$s" 2 | median)
	mem[$s]=$(col "$s" 3 | sort -n | tail -1)
	acc[$s]=$(col "$s" 5 | median)
	p50[$s]=$(col "$s" 6 | median)
	p99[$s]=$(col "$s" 7 | median)
	fs[$s]=$(cat "$W/$s.fsyncs" 2>/dev/null || echo 0)
done
ratio() { # METRIC PEER: Elit / peer
	local -n m=$1
	if [ "$(echo "${m[$2]} == 0" | bc)" = 1 ]; then
		echo "–"
		return
	fi
	echo "${m[elit]} / ${m[$2]}" | bc -l | awk '{printf "%.2f×", $1}'
}
echo "| server | msg/s end to end | accepted msg/s | CPU s / 1000 msg | peak memory (PSS) | fsyncs / msg | p50 / p99 latency |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for s in "${servers[@]}"; do
	case $s in elit) name=Elit ;; postfix) name=Postfix ;; chasquid) name=chasquid ;; esac
	printf '| %s | %.0f | %.0f | %.2f | %.0f MB | %s | %.1f / %.1f ms |\n' "$name" "${rate[$s]}" "${acc[$s]}" "${cpu[$s]}" \
		"$(echo "${mem[$s]} / 1024" | bc -l)" "${fs[$s]}" "${p50[$s]}" "${p99[$s]}"
done
printf '| smtp-sink alone | %.0f | %.0f | %.2f | %.0f MB | | %.1f / %.1f ms |\n' "${rate[sink]}" "${acc[sink]}" "${cpu[sink]}" \
	"$(echo "${mem[sink]} / 1024" | bc -l)" "${p50[sink]}" "${p99[sink]}"
for p in postfix chasquid; do
	case $p in postfix) name=Postfix ;; chasquid) name=chasquid ;; esac
	printf '| Elit / %s | %s | %s | %s | %s | | %s / %s |\n' "$name" "$(ratio rate "$p")" "$(ratio acc "$p")" \
		"$(ratio cpu "$p")" "$(ratio mem "$p")" "$(ratio p50 "$p")" "$(ratio p99 "$p")"
done
echo
# Over the floor: 1/rate - 1/floor, the time a message costs beyond what
# the client and the sink alone take on this machine.
over() { echo "1000 / ${rate[$1]} - 1000 / ${rate[sink]}" | bc -l; }
printf 'Time per message over smtp-sink alone (1/rate − 1/floor): Elit %.2f ms, Postfix %.2f ms, chasquid %.2f ms; Elit / Postfix %.2f×, Elit / chasquid %.2f×.\n' \
	"$(over elit)" "$(over postfix)" "$(over chasquid)" "$(echo "$(over elit) / $(over postfix)" | bc -l)" "$(echo "$(over elit) / $(over chasquid)" | bc -l)"
echo
printf 'Check: %s rounds of %s messages of %s bytes over %s sessions, %s per connection; the sink got' \
	"$rounds" "$n" "$size" "$sessions" "$per"
for s in "${servers[@]}"; do
	printf ' %s %s,' "$s" "$(col "$s" 4 | tr '\n' '/' | sed 's,/$,,')"
done | sed 's/,$/./'
for s in "${servers[@]}"; do
	r=$(col "$s" 8 | awk '{t += $1} END {print t + 0}')
	[ "$r" -gt 0 ] && printf ' %s refused %s messages (not 2xx after DATA or before).' "$s" "$r"
done
echo
