#!/usr/bin/env bash
# make run: the demo. Until the mail server lands it shows the user database
# path: the demo users.json stored in a OneFFS image (classic, as the original
# oneffs makes it, and fail-safe), read back and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RUN_DIR:-$(mktemp -d)}
mkdir -p bin
go build -o bin/oneffs ./oneffs/cmd/oneffs
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
