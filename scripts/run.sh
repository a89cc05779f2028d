#!/usr/bin/env bash
# make run: the demo appliance. Builds the vm image with the demo database
# (appliance/demo/users.json) and boots it in QEMU under software emulation,
# with Postfix's smtp-sink on 127.0.0.1:2526 standing for the Internet: the
# appliance relays everything to it through QEMU's guestfwd. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh $(scripts/image-deps.sh) smtp-sink:postfix
out=${RUN_DIR:-bin/run}
mkdir -p "$out/sink"
go build -o bin/elit-image ./image/cmd/elit-image
bin/elit-image build -target vm -db appliance/demo/users.json -domain example.org -hostname mail.example.org \
	-elit-flag=-smarthost=10.0.2.100:25 -o "$out/elit.img"
chmod 777 "$out/sink" # smtp-sink writes as nobody
chmod o+x "$out" "$(dirname "$out")"
smtp-sink -u nobody -d "$out/sink/%Y%m%d%H%M%S." 127.0.0.1:2526 100 &
trap 'kill $! 2>/dev/null' EXIT
pw=$(cat "$out/elit.img.password")
cat <<END
run: the demo appliance (its password: $pw). Once it is up (about 30 s):
  submit  swaks --server 127.0.0.1:5870 -tls --auth-user din --auth-password demo --from din@example.org --to you@example.net
  MX      swaks --server 127.0.0.1:2525 --to team@example.org
  status  curl -u gokrazy:$pw http://127.0.0.1:8025/
  relayed mail lands in $out/sink/ (smtp-sink on 127.0.0.1:2526)
  update  bin/elit-image update -host 127.0.0.1:8080 -status 127.0.0.1:8025 -smtp 127.0.0.1:2525 NEW.img
  users   bin/elit-image db push -host 127.0.0.1:8025 -password-file $out/elit.img.password users.json
END
bin/elit-image qemu "$out/elit.img"
