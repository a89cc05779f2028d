#!/usr/bin/env bash
# make run: the demo appliance. Makes the instance "demo" (once; kept in
# bin/run/instances/demo with its password and TLS key), builds its vm image
# with the demo database (appliance/demo/users.json) and boots it in QEMU
# under software emulation, with Postfix's smtp-sink on 127.0.0.1:2526
# standing for the Internet: the appliance relays everything to it through
# QEMU's guestfwd. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh $(scripts/image-deps.sh) smtp-sink:postfix
out=${RUN_DIR:-bin/run}
mkdir -p "$out/sink" "$out/instances"
export ELIT_INSTANCES=$(cd "$out/instances" && pwd)
go build -o bin/elit-image ./image/cmd/elit-image
if [ ! -f "$ELIT_INSTANCES/demo/instance.json" ]; then
	bin/elit-image new -i demo -target vm -db "$PWD/appliance/demo/users.json" -domain example.org -hostname mail.example.org \
		-host 127.0.0.1 -smtp-port 2525 -elit-flag=-smarthost=10.0.2.100:25
fi
bin/elit-image build -i demo
chmod 777 "$out/sink" # smtp-sink writes as nobody
chmod o+x "$out" "$(dirname "$out")"
smtp-sink -u nobody -d "$out/sink/%Y%m%d%H%M%S." 127.0.0.1:2526 100 &
trap 'kill $! 2>/dev/null' EXIT
dir=$ELIT_INSTANCES/demo
pw=$(cat "$dir/password")
cat <<END
run: the demo appliance (instance $dir, password $pw). Once it is up (about 30 s):
  submit  swaks --server 127.0.0.1:5870 -tls --auth-user din --auth-password demo --from din@example.org --to you@example.net
  MX      swaks --server 127.0.0.1:2525 --to team@example.org
  status  curl --cacert $dir/tls.pem --resolve mail.example.org:8025:127.0.0.1 -u gokrazy:$pw https://mail.example.org:8025/
  relayed mail lands in $out/sink/ (smtp-sink on 127.0.0.1:2526)
  update  ELIT_INSTANCES=$ELIT_INSTANCES bin/elit-image update -i demo
  users   ELIT_INSTANCES=$ELIT_INSTANCES bin/elit-image db push -i demo users.json
END
bin/elit-image qemu -i demo -fresh
