# mkcdb: validation, atomic rebuild, stale detection, generic mode.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
ok "sample conf compiles" mkcdb -c "$C" -f -q
for t in access domains backup mailboxes; do
	ok "$t.cdb exists" test -s "$C/$t.cdb"
done
is "$(cdb -q "$C/access.cdb" 127.0.0.2/32)" "relay 9" "access record readable with cdb(1)"
is "$(cdb -q "$C/domains.cdb" example.net)" "5" "domains: 'a;b' on one line"
is "$(cdb -q "$C/mailboxes.cdb" sales@example.com)" "13 alice@example.com bob@example.com" "mailboxes list value"

# nothing stale: nothing rebuilt
is "$(mkcdb -c "$C")" "" "no stale tables, nothing rebuilt"
sleep 0.01; touch "$C/domains"
is "$(mkcdb -c "$C")" "rebuilt: $(cd "$C" && pwd -P)/domains.cdb" "only the stale table is rebuilt"

# a broken line: file:line: reason, exit 100, old table untouched
cp "$C/access.cdb" "$T/access.before"
printf '10.0.0.0/8 relay\n10.1.2.3/8 allow\nnot-an-ip deny\n192.0.2.9 maybe\n' >>"$C/access"
mkcdb -c "$C" access 2>"$T/err"; rc=$?
is "$rc" 100 "bad table: exit 100"
n=$(grep -c '' "$C/access" | tr -d ' ')
like "$(cat "$T/err")" "access:$((n-2)): address has bits set beyond the prefix" "error names file:line for host bits"
like "$(cat "$T/err")" "access:$((n-1)): bad address or prefix" "error names file:line for a bad address"
like "$(cat "$T/err")" "access:$n: action must be allow, deny or relay" "error names file:line for a bad action"
ok "old access.cdb untouched" cmp "$C/access.cdb" "$T/access.before"
ok "no temp file left behind" test ! -e "$C/access.cdb.tmp"

# duplicates are errors
printf 'a@example.com a/\nA@Example.com b/\n' >"$C/mailboxes"
mkcdb -c "$C" mailboxes 2>"$T/err"; rc=$?
is "$rc" 100 "duplicate key: exit 100"
like "$(cat "$T/err")" "mailboxes:2: duplicate key \"a@example.com\" \(first on line 1\)" "duplicate reported with both lines"

# mailbox targets may not escape the mail root
for bad in ../x/ /etc/ 'a/../../b' '.hidden/' 'a//b' 'x;rm'; do
	printf 'a@example.com %s\n' "$bad" >"$C/mailboxes"
	nok "mailbox path '$bad' refused" mkcdb -c "$C" mailboxes
done
printf 'a@example.com good/Maildir/\n@example.com catch/\nl@example.com a@example.com,b@example.net\n' >"$C/mailboxes"
ok "good mailboxes accepted" mkcdb -c "$C" mailboxes

# domains
printf 'bad_domain.com\n' >"$C/domains"
nok "bad domain refused" mkcdb -c "$C" domains
printf 'Example.COM.\n.sub.example.org;x.test, y.test\n' >"$C/domains"
ok "domains with case, trailing dot, ; and ," mkcdb -c "$C" domains
is "$(cdb -q "$C/domains.cdb" example.com)" 1 "domain lowercased, trailing dot dropped"
is "$(cdb -q "$C/domains.cdb" .sub.example.org)" 2 "subdomain entry kept with its dot"

# settings are validated too
cp "$C/settings" "$T/settings.good"
echo "max_size lots" >>"$C/settings"
mkcdb -c "$C" 2>"$T/err"; rc=$?
is "$rc" 100 "bad settings: exit 100"
like "$(cat "$T/err")" "settings:[0-9]+: not a number for max_size" "settings error has file:line"
cp "$T/settings.good" "$C/settings"
echo "no_such_setting 1" >>"$C/settings"
nok "unknown setting refused" mkcdb -c "$C" -n
cp "$T/settings.good" "$C/settings"

# -n checks without writing
printf '10.0.0.0/8 relay\n' >"$C/access"
rm -f "$C/access.cdb"
ok "-n validates" mkcdb -c "$C" -n access
ok "-n writes nothing" test ! -e "$C/access.cdb"

# generic key/value mode
printf 'k1 v1\n# comment\nk2 value with blanks\n\n' >"$T/kv"
ok "generic mode" mkcdb -g "$T/kv" "$T/kv.cdb"
is "$(cdb -q "$T/kv.cdb" k2)" "value with blanks" "generic value"
printf 'k1 v1\nk1 v2\n' >"$T/kv"
nok "generic duplicates refused" mkcdb -g "$T/kv" "$T/kv.cdb"

# concurrent rebuilds serialise and leave a valid table
python3 -c '
for i in range(20000): print("10.%d.%d.0/24 deny spam %d" % (i // 256, i % 256, i))' >"$C/access"
for i in 1 2 3 4; do mkcdb -c "$C" -q access & done; wait
is "$(cdb -q "$C/access.cdb" 10.1.2.0/24)" "deny 259 spam 258" "concurrent rebuilds give a whole table"
nok "unknown table name" mkcdb -c "$C" nosuchtable
nok "usage error" mkcdb -z
