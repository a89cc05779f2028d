#!/usr/bin/env bash
# Syncs per relayed message: elit serve under strace (fsync, fdatasync, syncfs, sync,
# sync_file_range counted over every thread), Postfix's smtp-source sending
# MESSAGES (default 500) 1 KiB messages over SESSIONS (default 10)
# connections to a local name that forwards outside, smtp-sink as the
# smarthost; counted until the queue is empty again. Loopback only.
#
#	scripts/bench-fsync.sh [MESSAGES [SESSIONS]]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh smtp-source:postfix strace:strace
n=${1:-500}
sessions=${2:-10}
go build -o bin/elit ./elit/cmd/elit

W=$(mktemp -d /var/tmp/elit-fsync.XXXXXX)
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
	echo "bench-fsync: nothing listens on $1" >&2
	return 1
}

smtp-sink -u nobody 127.0.0.1:2590 200 &
pids+=($!)
wait_port 2590
echo '[{"name":"din","mailboxes":["romain@example.com"]}]' >"$W/users.json"
strace -f -c -o "$W/strace.txt" -e trace=fsync,fdatasync,sync_file_range,syncfs,sync \
	bin/elit serve -domain example.org -hostname relay.example.org -db-json "$W/users.json" \
	-state "$W/state" -mx-addr 127.0.0.1:2591 -submission-addr "" -submissions-addr "" -http-addr "" \
	-max-conns-per-ip 200 -smarthost 127.0.0.1:2590 -resolver 127.0.0.1:5399 -log-level warn \
	-mail-checks=false -arc=false -dkim=false 2>"$W/elit.log" &
spid=$!
pids+=($spid)
wait_port 2591
sleep 1 # start-up syncs (the state directory) settle first; counted, and reported apart below
smtp-source -d -s "$sessions" -m "$n" -l 1024 -f bench@example.net -t din@example.org \
	-M client.example.net 127.0.0.1:2591 >/dev/null
for _ in $(seq 6000); do
	left=$(find "$W/state/queue" -maxdepth 1 -type f ! -name lock ! -name '.*' | wc -l)
	[ "$left" = 0 ] && break
	sleep 0.05
done
kill -TERM "$(pgrep -P "$spid")" # elit, not strace
wait "$spid" || true
cat "$W/strace.txt"
calls=$(awk '$NF ~ /^(fsync|fdatasync|sync_file_range|syncfs|sync)$/ {s += $4} END {print s + 0}' "$W/strace.txt")
printf 'messages %d, sessions %d: %d sync calls, %.2f per message\n' "$n" "$sessions" "$calls" "$(echo "$calls / $n" | bc -l)"
