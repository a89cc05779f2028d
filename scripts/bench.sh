#!/usr/bin/env bash
# Runs the benchmarks and prints their figures as Markdown tables, the form
# docs/benchmarks.md keeps them in. COUNT runs of each; the median is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

echo "## OneFFS throughput"
echo
echo "64 MiB written and read through an image file in a temporary directory on"
echo "the local disk; every oneffs Write syncs three times (classic) or after the"
echo "chain and each superblock (fail-safe). Baselines from the same run: writes"
echo "against os.WriteFile plus fsync (equally durable), reads against os.ReadFile."
echo "Median of $count runs; \`go test ./oneffs -bench . -benchtime 10x -count $count\`"
echo "on $(nproc) cores, $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%d)."
echo
go test ./oneffs -run '^$' -bench . -benchtime 10x -count "$count" >"$raw"
awk '
/^Benchmark/ {
	split($1, a, "/"); op = substr(a[1], 10); name = a[2]; sub(/-[0-9]+$/, "", name)
	for (i = 2; i <= NF; i++) if ($(i+1) == "MB/s") v = $i
	key = op "/" name
	if (!(key in n)) order[++k] = key
	vals[key, ++n[key]] = v
}
function median(key,   m, i, j, t, x) {
	m = n[key]
	for (i = 1; i <= m; i++) x[i] = vals[key, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
	return (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
}
END {
	base["Write"] = "Write/os.WriteFile+fsync"; base["Read"] = "Read/os.ReadFile"
	print "| operation | implementation | MB/s | ratio to baseline |"
	print "|---|---|---:|---:|"
	for (i = 1; i <= k; i++) {
		split(order[i], p, "/"); b = median(base[p[1]])
		printf "| %s | %s | %.0f | %.2f |\n", p[1], p[2], median(order[i]), median(order[i]) / b
	}
}' "$raw"

echo
echo "## User database load"
echo
echo "Parse and check a 100 000-user database as \`elit passwd\` makes it (argon2id"
echo "hash, SCRAM-SHA-256 secret, one mailbox each): about 34 MB of JSON. Median of"
echo "$count runs; \`go test ./elit/userdb -bench Parse100k -benchtime 3x -count $count\`."
echo
go test ./elit/userdb -run '^$' -bench Parse100k -benchtime 3x -benchmem -count "$count" >"$raw"
awk '
/^BenchmarkParse100k/ { for (i = 2; i <= NF; i++) { if ($(i+1) == "ns/op") ns[++n] = $i; if ($(i+1) == "B/op") mem = $i } }
END {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (ns[j] < ns[i]) { t = ns[i]; ns[i] = ns[j]; ns[j] = t }
	m = (n % 2) ? ns[(n + 1) / 2] : (ns[n / 2] + ns[n / 2 + 1]) / 2
	print "| users | load time | allocated |"
	print "|---:|---:|---:|"
	printf "| 100 000 | %.2f s | %.0f MB |\n", m / 1e9, mem / 1e6
}' "$raw"

echo
echo "## DKIM"
echo
echo "Signing and verifying a message (4 KiB and 1 MiB; rsa-2048 and ed25519;"
echo "relaxed/relaxed), Elit's elit/dkim next to emersion/go-msgauth's dkim in the"
echo "same run, the key lookup answered from memory. Median of $count runs;"
echo "\`go test ./elit/dkim -bench 'Sign|Verify' -benchtime 20x -count $count\`."
echo
go test ./elit/dkim -run '^$' -bench 'Sign|Verify' -benchtime 20x -count "$count" >"$raw"
awk '
/^Benchmark(Sign|Verify)\// {
	split($1, a, "/"); op = substr(a[1], 10); impl = a[2]; alg = a[3]; size = a[4]; sub(/-[0-9]+$/, "", size)
	for (i = 2; i <= NF; i++) if ($(i+1) == "ns/op") v = $i
	key = op " " alg " " size
	if (!(key in seen)) { order[++k] = key; seen[key] = 1 }
	vals[key, impl, ++n[key, impl]] = v
}
function median(key, impl,   m, i, j, t, x) {
	m = n[key, impl]
	for (i = 1; i <= m; i++) x[i] = vals[key, impl, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
	return (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
}
function show(ns) { return ns >= 1e6 ? sprintf("%.2f ms", ns / 1e6) : sprintf("%.0f µs", ns / 1e3) }
END {
	print "| operation | key | message | Elit | go-msgauth | Elit / go-msgauth |"
	print "|---|---|---:|---:|---:|---:|"
	for (i = 1; i <= k; i++) {
		split(order[i], p, " "); o = median(order[i], "ours"); g = median(order[i], "msgauth")
		printf "| %s | %s | %s | %s | %s | %.2f |\n", p[1], p[2], p[3], show(o), show(g), o / g
	}
}' "$raw"

echo
echo "## The status page"
echo
echo "The operator's page (GET /) with 20 000 queued messages (1 to 3 recipients"
echo "each, retries and errors), loaded in Debian's chromium driven by chromedp"
echo "over loopback: navigation until the page is ready, the first load and"
echo "two more. Median of $count runs;"
echo "\`ELIT_PAGE_BENCH=1 go test ./elit/status -run TestPageInBrowser -count $count\`."
echo
scripts/deps.sh chromium:chromium
ELIT_PAGE_BENCH=1 go test ./elit/status -run '^TestPageInBrowser$' -count "$count" -v >"$raw"
awk '
/^PAGELOAD/ {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "messages") msgs = kv[2]; else if (kv[1] == "first_ms") first[++n] = kv[2]; else later[++m] = kv[2] }
}
function median(x, k,   i, j, t) {
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
	return (k % 2) ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2
}
END {
	if (n == 0) { print "no PAGELOAD line: the test failed"; exit 1 }
	print "| queued messages | first load | next loads |"
	print "|---:|---:|---:|"
	printf "| %d | %d ms | %d ms |\n", msgs, median(first, n), median(later, m)
}' "$raw"

echo
echo "## SMTP reception"
echo
echo "Messages accepted (answered 250 after DATA) per second over loopback, Postfix's"
echo "smtp-source as the client (\`smtp-source -d -s N -m 200 -l SIZE\`), 200 messages per"
echo "run, median of ${BENCH_RUNS:-5} runs, mail authentication off in Elit as in the peers. Each"
echo "server fsyncs a message before its 250: Elit"
echo "queues it (expanded, envelope in JSON); Postfix $(postconf -d -h mail_version 2>/dev/null) puts it on hold"
echo "(\`check_client_access static:HOLD\`, no delivery); chasquid hands it to a no-op"
echo "delivery agent (\`/bin/true\`) since it has no hold queue. All in one private"
echo "network namespace with only loopback (scripts/bench-smtp.sh). Then the relay:"
echo "${RELAY_MESSAGES:-2000} messages from smtp-source (10 connections) to a local name that forwards to one outside mailbox,"
echo "through Elit (queued, SRS-rewritten) to smtp-sink as smarthost, timed until Elit's queue is"
echo "empty; CPU is Elit's user + system time (fsync and file work count as system time)."
echo "The relay runs twice: mail authentication off, then on (SPF, DKIM, DMARC, ARC and iprev"
echo "checks against a DNS server on loopback, the forward ARC-sealed and DKIM-signed)."
echo
scripts/bench-smtp.sh

echo
echo "## Relay: Elit, Postfix, chasquid"
echo
echo "The relay end to end through each server (scripts/bench-relay3.sh: a local"
echo "name forwarded to one outside mailbox, smtp-sink as the destination, timed"
echo "until the sink has every message; our load generator internal/cmd/loadgen"
echo "as the client, which times each message from the end of DATA to the 250;"
echo "Elit's mail authentication off as the peers'; rounds rotated, medians), at"
echo "1 and 50 concurrent sessions, a new connection per message or 100 messages"
echo "per connection, 1 and 100 KiB. Each server keeps its default durability:"
echo "Elit and Postfix sync a message before its 250, chasquid does not."
echo "The smtp-sink alone row is the client straight to the sink: the floor of"
echo "this machine, a server that stores and forwards nothing; the line under"
echo "each table gives each server's time per message over that floor."
for size in 1024 102400; do
	for sessions in 1 50; do
		for per in 1 100; do
			n=1000
			[ "$sessions" = 1 ] && n=300
			[ "$sessions" = 50 ] && [ "$per" = 100 ] && n=5000
			echo
			echo "$((size / 1024)) KiB, $sessions session(s), $([ "$per" = 1 ] && echo "a new connection per message" || echo "$per messages per connection"), $n messages:"
			echo
			scripts/bench-relay3.sh "$size" "$n" "$sessions" "$per"
		done
	done
done

echo
echo "## The appliance image"
echo
echo "The Elit \`vm\` image next to a minimal gokrazy image (\`appliance/hello\`, a"
echo "program answering \"220 hello\" on port 25), built by \`elit-image build\` (2 GiB"
echo "image, database partition, /perm formatted) and booted by \`elit-image qemu\`"
echo "(UEFI, virtio, TCG software emulation: no KVM) in the same run, each round on a"
echo "fresh disk (scripts/bench-image.sh, ROUNDS=3). Boot is QEMU start to the first SMTP"
echo "banner on the forwarded port 25; update is the command until the new version greets."
echo
scripts/bench-image.sh
