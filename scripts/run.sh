#!/usr/bin/env bash
# make run: the demo. The demo users.json is stored in OneFFS images (classic,
# as the original oneffs makes it, and fail-safe), read back and verified, and
# elit serve runs on the fail-safe image on loopback ports until Ctrl-C,
# relaying everything to Postfix's smtp-sink on 127.0.0.1:2526 as "the
# Internet". (The QEMU appliance takes over once the image tooling exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh smtp-sink:postfix
out=${RUN_DIR:-$(mktemp -d)}
mkdir -p bin
go build -o bin/oneffs ./oneffs/cmd/oneffs
go build -o bin/elit ./elit/cmd/elit
db=appliance/demo/users.json
rm -f "$out/db.img" "$out/db-failsafe.img"
set -x
bin/oneffs create -i "$db" -o "$out/db.img"
bin/oneffs info "$out/db.img"
bin/oneffs create --format fail-safe --size 64K -i "$db" -o "$out/db-failsafe.img"
bin/oneffs verify "$out/db-failsafe.img"
bin/oneffs get "$out/db-failsafe.img" | cmp - "$db"
{ set +x; } 2>/dev/null
echo "run: the demo database is in $out/db.img and $out/db-failsafe.img"
chmod 711 "$out" && mkdir -p "$out/sink" && chmod 777 "$out/sink" # smtp-sink writes as nobody
smtp-sink -u nobody -D "$out/sink/dump" 127.0.0.1:2526 100 &
trap 'kill $! 2>/dev/null' EXIT
cat <<END
run: starting elit serve (Ctrl-C stops it). Endpoints on 127.0.0.1:
  MX          2525   swaks --server 127.0.0.1:2525 --to team@example.org
  submission  5870   swaks --server 127.0.0.1:5870 -tls --auth-user din --auth-password demo --from din@example.org --to you@example.net --header 'From: din@example.org'
  submissions 4650   (implicit TLS)
  the queue:         bin/elit queue -state $out/state list
  delivered mail:    $out/sink/dump (smtp-sink on 127.0.0.1:2526 stands for the Internet)
END
bin/elit serve -domain example.org -hostname mail.example.org -db "$out/db-failsafe.img" -state "$out/state" \
	-mx-addr 127.0.0.1:2525 -submission-addr 127.0.0.1:5870 -submissions-addr 127.0.0.1:4650 \
	-smarthost 127.0.0.1:2526
