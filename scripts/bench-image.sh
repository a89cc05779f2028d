#!/usr/bin/env bash
# The appliance figures of docs/benchmarks.md: the Elit vm image next to a
# minimal gokrazy image (appliance/hello: a program that answers "220 hello"
# on port 25), both built with elit-image build and booted with elit-image
# qemu (software emulation, TCG) in the same run. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh $(scripts/image-deps.sh) curl:curl bc:bc openssl:openssl >&2
go build -o bin/elit-image ./image/cmd/elit-image
dir=$(mktemp -d)
qemu_pid=
cleanup() { [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
smtp=${BENCH_SMTP_PORT:-22525} https=${BENCH_HTTPS_PORT:-28443} status=${BENCH_STATUS_PORT:-28025}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# banner waits (up to 5 min) for an SMTP greeting on the forwarded port.
banner() {
	local end=$(($(date +%s) + 300))
	while [ "$(date +%s)" -lt $end ]; do
		if timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$smtp && head -c 4 <&3" 2>/dev/null | grep -q '^220'; then
			return 0
		fi
		sleep 0.5
	done
	echo "no SMTP banner" >&2
	return 1
}

boot() { # image
	bin/elit-image qemu -smtp "$smtp" -submission 0 -submissions 0 -http 0 -https "$https" -status "$status" -sink "" "$1" >/dev/null &
	qemu_pid=$!
}

halt() {
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=
}

# squashfs_size: bytes_used of the root file system (partition 2, 104 MiB in).
squashfs_size() { od -An -t u8 -j $((104 * 1048576 + 40)) -N 8 "$1" | tr -d ' '; }

# plain_update: gokrazy's update protocol without a trial (for hello, which
# has no status page): root, boot, switch, reboot; over HTTPS, the image's
# key pinned, as elit-image does.
plain_update() { # image first-image (its password and key)
	local used root_len pin
	used=$(squashfs_size "$1")
	root_len=$(((used + 4095) / 4096 * 4096))
	dd if="$1" of="$dir/root" bs=1M iflag=skip_bytes,count_bytes skip=$((104 * 1048576)) count=$root_len status=none
	dd if="$1" of="$dir/boot" bs=1M skip=4 count=100 status=none
	pin=$(openssl x509 -in "$2.tls.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
	local c=(curl -sfk --pinnedpubkey "sha256//$pin" -u "gokrazy:$(cat "$2.password")")
	for p in root boot; do
		"${c[@]}" -H 'X-Gokrazy-Update-Hash: crc32' -T "$dir/$p" "https://127.0.0.1:$https/update/$p" >/dev/null
	done
	"${c[@]}" -X POST "https://127.0.0.1:$https/update/switch" >/dev/null
	"${c[@]/-sfk/-sk}" -X POST "https://127.0.0.1:$https/reboot" >/dev/null || true
	sleep 5
	banner
}

# median of the arguments, then min-max: "29.8 (27.1-60.5)".
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.1f s (%.1f-%.1f)", m, v[1], v[NR]}'; }

rounds=${ROUNDS:-3}
declare -A build_s root_mb gz_mb boot_s update_s
for target in hello vm; do
	img=$dir/$target.img
	t=$(now)
	bin/elit-image build -target "$target" -db appliance/demo/users.json -domain example.org -version v1 -o "$img" >/dev/null
	build_s[$target]=$(since "$t")
	root_mb[$target]=$(echo "scale=1; $(squashfs_size "$img") / 1048576" | bc)
	gz_mb[$target]=$(echo "scale=1; $(gzip -c "$img" | wc -c) / 1048576" | bc)
	# v2: the same password and key (an update must be accepted).
	bin/elit-image build -target "$target" -db appliance/demo/users.json -domain example.org -version v2 \
		-password-file "$img.password" -tls-cert "$img.tls.pem" -tls-key "$img.tls.key" -o "$dir/$target-v2.img" >/dev/null

	# Each round boots a fresh disk made from v1 (an update writes the
	# disk) and updates it to v2.
	boots=() updates=()
	for ((r = 0; r < rounds; r++)); do
		cp --sparse=always "$img" "$dir/disk.img"
		t=$(now)
		boot "$dir/disk.img"
		banner
		boots+=("$(since "$t")")
		if [ "$target" = vm ]; then
			# The status page may come a moment after the banner.
			sleep 3
			t=$(now)
			bin/elit-image update -host "127.0.0.1:$https" -status "127.0.0.1:$status" -smtp "127.0.0.1:$smtp" \
				-password-file "$img.password" -cert "$img.tls.pem" "$dir/$target-v2.img" >"$dir/update.log" 2>&1 ||
				{ cat "$dir/update.log" >&2; exit 1; }
		else
			t=$(now)
			plain_update "$dir/$target-v2.img" "$img"
		fi
		updates+=("$(since "$t")")
		halt
	done
	boot_s[$target]=$(stats "${boots[@]}")
	update_s[$target]=$(stats "${updates[@]}")
done

echo "Median of $rounds rounds (min-max), TCG, $(nproc) cores, $(date -u +%Y-%m-%d)."
echo
echo "| image | root squashfs | whole image, gzip | build (warm cache) | QEMU start to SMTP banner | update |"
echo "|---|---:|---:|---:|---:|---:|"
printf "| hello (minimal gokrazy) | %s MiB | %s MiB | %.1f s | %s | %s: upload, switch, 1 reboot |\n" \
	"${root_mb[hello]}" "${gz_mb[hello]}" "${build_s[hello]}" "${boot_s[hello]}" "${update_s[hello]}"
printf "| Elit vm | %s MiB | %s MiB | %.1f s | %s | %s: upload, trial boot, checks, switch, 1 reboot |\n" \
	"${root_mb[vm]}" "${gz_mb[vm]}" "${build_s[vm]}" "${boot_s[vm]}" "${update_s[vm]}"
