#!/usr/bin/env bash
# The relay alone, Elit only, at one point: smtp-source sends MESSAGES
# messages of SIZE bytes over SESSIONS connections (a new connection per
# message, or with PERCONN=many all of a session's messages over one) to
# a local name forwarded outside; smtp-sink is the smarthost. Timed until
# the queue is empty. Prints msg/s end to end, Elit's CPU s per 1000
# messages, peak RSS, and the connections the sink saw; with PROFILE=FILE
# elit serve writes its CPU profile there (ELIT_CPUPROFILE); with ELIT=PATH
# that binary runs instead of one built from the tree. Loopback only.
#
#	scripts/bench-relay.sh SIZE [MESSAGES [SESSIONS]]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh smtp-source:postfix >/dev/null
size=${1:?size}
n=${2:-2000}
sessions=${3:-10}
perconn=${PERCONN:-one}
elit=${ELIT:-}
if [ -z "$elit" ]; then
	go build -o bin/elit ./elit/cmd/elit
	elit=bin/elit
fi

W=$(mktemp -d /var/tmp/elit-relay.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-relay: nothing listens on $1" >&2
	return 1
}
port=${PORT:-2580}
smtp-sink -u nobody -c 127.0.0.1:$((port + 1)) 200 >"$W/sink.out" &
pids+=($!)
wait_port $((port + 1))
echo '[{"name":"din","mailboxes":["romain@example.com"]}]' >"$W/users.json"
ELIT_CPUPROFILE=${PROFILE:-} "$elit" serve -domain example.org -hostname relay.example.org -db-json "$W/users.json" \
	-state "$W/state" -mx-addr "127.0.0.1:$port" -submission-addr "" -submissions-addr "" -http-addr "" \
	-max-conns-per-ip 200 -smarthost "127.0.0.1:$((port + 1))" -resolver 127.0.0.1:5399 -log-level warn \
	-mail-checks=false -arc=false -dkim=false 2>"$W/elit.log" &
pid=$!
pids+=($pid)
wait_port "$port"
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=$(ticks "$pid")
t0=$(date +%s.%N)
d=()
[ "$perconn" = many ] && d=(-d)
smtp-source "${d[@]}" -s "$sessions" -m "$n" -l "$size" -f bench@example.net -t din@example.org \
	-M client.example.net "127.0.0.1:$port" >/dev/null
for _ in $(seq 6000); do
	[ -z "$(find "$W/state/queue" -maxdepth 1 -type f ! -name lock ! -name '.*' -print -quit)" ] && break
	sleep 0.02
done
t1=$(date +%s.%N)
c1=$(ticks "$pid")
hz=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status")
kill -TERM "$pid"
wait "$pid" || true
printf 'size %d, %d messages, %d sessions, %s per connection: %.0f msg/s, %.2f CPU s / 1000 msg, peak RSS %s\n' \
	"$size" "$n" "$sessions" "$perconn" "$(echo "$n / ($t1 - $t0)" | bc -l)" \
	"$(echo "($c1 - $c0) / $hz / $n * 1000" | bc -l)" "$rss"
printf "sink: %s\n" "$(tr "\r" "\n" <"$W/sink.out" | tail -1)"
grep -i -E 'error|warn' "$W/elit.log" | head -5 || true
