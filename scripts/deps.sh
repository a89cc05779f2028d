#!/usr/bin/env bash
# Makes sure the commands a Makefile target needs are installed.
# Usage: scripts/deps.sh COMMAND:DEBIAN_PACKAGE ...
# A COMMAND of the form perl=Module::Name checks for a Perl module instead,
# py=module for a module of Debian's Python (/usr/bin/python3), and one that
# starts with / for a file.
# Missing ones are installed with apt-get when running as root on Debian;
# otherwise it stops and says exactly what to install.
set -euo pipefail
missing=()
for spec in "$@"; do
	cmd=${spec%:*} pkg=${spec##*:}
	case $cmd in
	perl=*) perl -M"${cmd#perl=}" -e1 >/dev/null 2>&1 || missing+=("$pkg") ;;
	py=*) /usr/bin/python3 -c "import ${cmd#py=}" >/dev/null 2>&1 || missing+=("$pkg") ;;
	/*) [ -e "$cmd" ] || missing+=("$pkg") ;;
	*) command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg") ;;
	esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
# shellcheck disable=SC2207
missing=($(printf '%s\n' "${missing[@]}" | sort -u))
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Postfix would otherwise configure itself as a mail server; we only use
	# its tools (smtp-sink, smtp-source) and private instances.
	if [[ " ${missing[*]} " == *" postfix "* ]]; then
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	fi
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		apt-get update -qq >/dev/null
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
	fi
	exit 0
fi
echo "deps: missing Debian packages; install them with:" >&2
echo "  sudo apt-get install ${missing[*]}" >&2
exit 1
