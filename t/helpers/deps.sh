#!/bin/sh
# deps.sh WHAT PKG...: install missing Debian packages when root,
# otherwise print the command that would.
what=$1; shift
missing=
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	echo "deps: installing $what packages:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Packages such as postfix and dovecot would start system daemons on
	# ports 25/110/143; the tests run private instances instead.
	echo "postfix postfix/main_mailer_type select No configuration" |
		debconf-set-selections 2>/dev/null
	prc=/usr/sbin/policy-rc.d
	if [ ! -e $prc ]; then
		printf '#!/bin/sh\nexit 101\n' > $prc && chmod 755 $prc
		trap 'rm -f $prc' EXIT
	fi
	if ! apt-get install -y -q $missing >/dev/null 2>&1; then
		apt-get update -q >/dev/null 2>&1
		apt-get install -y -q $missing >&2 || { echo "deps: apt-get failed" >&2; exit 1; }
	fi
else
	echo "deps: missing $what packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	[ "$what" = build ] && exit 1
fi
exit 0
