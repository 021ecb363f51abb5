# ruleproc -m: the same rules as a milter, driven by Debian's miltertest.
. "$TOP/t/lib.sh"
command -v miltertest >/dev/null || { skip "miltertest not installed (apt-get install miltertest)"; exit 0; }
newconf
C=$T/conf
cat >"$C/rules" <<'EOF'
rule "Bad client"
    client 203.0.113.0/24
    reject 554 5.7.1 "Your network is blocked"
rule "Forged local sender"
    sender *@example.com
    not client 127.0.0.0/8
    reject 550 5.7.1 "Local sender from outside"
rule "Old domain"
    recipient *@old.example.net
    reject 550 5.1.1 "This domain no longer receives mail"
rule "Night"
    recipient night@example.com
    tempfail 451 4.3.2 "Sleeping"
rule "Reject executables"
    attachment *.exe
    reject 550 5.7.1 "No executables, 100% sure"
rule "Mark"
    add-header X-Rules "checked"
    continue
rule "Junk"
    header Subject *viagra*
    tag-subject [SPAM]
    folder Junk
    continue
rule "Dave has left"
    recipient dave@example.com
    redirect bob@example.com
rule "Archive sales"
    recipient sales@example.com
    copy archive@example.com
    continue
rule "Silent"
    sender *@junk.example
    discard
rule "Carol ignores annoying"
    sender *@annoying.example
    recipient carol@example.com
    discard
rule "Big"
    size > 2K
    body *secret*
    reject 552 5.3.4 "Big and secret"
EOF
S=$T/milter.sock
ruleproc -m "unix:$S" -c "$C" 2>"$T/milter.log" &
bg_pid $!
i=0; while [ ! -S "$S" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -S "$S" ] || { echo "not ok - milter socket did not appear"; cat "$T/milter.log"; exit 1; }
echo "ok - milter listening on a unix socket"

cat >"$T/t.lua" <<EOF
local sock = "unix:$S"
local function check(c, what) if c then mt.echo("ok - " .. what) else mt.echo("not ok - " .. what) end end
local function conn(ip)
	local c = mt.connect(sock, 20, 0.1)
	assert(c, "connect")
	assert(mt.conninfo(c, "client.example.net", ip) == nil)
	assert(mt.helo(c, "client.example.net") == nil)
	return c
end

-- blocked client: MAIL rejected with the rule's reply
local c = conn("203.0.113.7")
assert(mt.mailfrom(c, "<x@example.net>") == nil)
check(mt.getreply(c) == SMFIR_REPLYCODE, "blocked client: MAIL rejected with a custom reply")
mt.disconnect(c)

-- forged local sender from outside; allowed from 127.0.0.1
c = conn("192.0.2.1")
mt.mailfrom(c, "<alice@example.com>")
check(mt.getreply(c) == SMFIR_REPLYCODE, "forged local sender rejected at MAIL")
mt.disconnect(c)
c = conn("127.0.0.1")
mt.mailfrom(c, "<alice@example.com>")
check(mt.getreply(c) == SMFIR_CONTINUE, "local sender from localhost continues")
mt.disconnect(c)

-- per-recipient reject and tempfail at RCPT
c = conn("192.0.2.1")
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<a@old.example.net>")
check(mt.getreply(c) == SMFIR_REPLYCODE, "old-domain recipient rejected at RCPT")
mt.rcptto(c, "<night@example.com>")
check(mt.getreply(c) == SMFIR_REPLYCODE, "tempfail recipient answered at RCPT")
mt.rcptto(c, "<alice@example.com>")
check(mt.getreply(c) == SMFIR_CONTINUE, "good recipient continues")
mt.header(c, "From", "x@example.net")
mt.header(c, "Subject", "buy viagra now")
mt.eoh(c)
mt.bodystring(c, "hello\r\n")
mt.eom(c)
check(mt.getreply(c) == SMFIR_CONTINUE or mt.getreply(c) == SMFIR_ACCEPT, "tagged message accepted")
check(mt.eom_check(c, MT_HDRADD, "X-Rules", "checked"), "header added")
check(mt.eom_check(c, MT_HDRCHANGE, "Subject", "[SPAM] buy viagra now"), "subject tagged with smfi_chgheader")
check(mt.eom_check(c, MT_HDRADD, "X-Rules-Folder", "<alice@example.com> Junk"), "folder becomes X-Rules-Folder")
check(not mt.eom_check(c, MT_RCPTDELETE, "<a@old.example.net>"), "rejected recipient is not touched at EOM")

-- second message on the same connection: redirect and copy
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<dave@example.com>")
mt.rcptto(c, "<sales@example.com>")
mt.header(c, "Subject", "quote")
mt.eoh(c)
mt.bodystring(c, "hi\r\n")
mt.eom(c)
check(mt.eom_check(c, MT_RCPTDELETE, "<dave@example.com>"), "redirect: old recipient deleted")
check(mt.eom_check(c, MT_RCPTADD, "<bob@example.com>"), "redirect: new recipient added")
check(mt.eom_check(c, MT_RCPTADD, "<archive@example.com>"), "copy: archive recipient added")
check(not mt.eom_check(c, MT_RCPTDELETE, "<sales@example.com>"), "copy: original recipient kept")
check(not mt.eom_check(c, MT_HDRCHANGE, "Subject"), "no tag without a match")

-- third: discard
mt.mailfrom(c, "<spam@junk.example>")
mt.rcptto(c, "<alice@example.com>")
mt.eom(c)
check(mt.getreply(c) == SMFIR_DISCARD, "discard rule: SMFIS_DISCARD")

-- per-recipient discard deletes only that recipient
mt.mailfrom(c, "<x@annoying.example>")
mt.rcptto(c, "<carol@example.com>")
mt.rcptto(c, "<alice@example.com>")
mt.eom(c)
check(mt.eom_check(c, MT_RCPTDELETE, "<carol@example.com>"), "per-recipient discard: smfi_delrcpt")
check(mt.getreply(c) ~= SMFIR_DISCARD, "per-recipient discard: message goes on")

-- attachment reject at end of data, '%' survives
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<alice@example.com>")
mt.header(c, "Subject", "invoice")
mt.header(c, "Content-Type", "multipart/mixed; boundary=\"b\"")
mt.eoh(c)
mt.bodystring(c, "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n\r\nTVqQ\r\n--b--\r\n")
mt.eom(c)
check(mt.getreply(c) == SMFIR_REPLYCODE, "executable attachment rejected at end of data")

-- size and body, across body chunks
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<alice@example.com>")
mt.header(c, "Subject", "big")
mt.eoh(c)
mt.bodystring(c, string.rep("filler line of text\r\n", 200))
mt.bodystring(c, "the sec")
mt.bodystring(c, "ret plan\r\n")
mt.eom(c)
check(mt.getreply(c) == SMFIR_REPLYCODE, "size and body (split across chunks) rule")

-- abort resets the message
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<alice@example.com>")
mt.abort(c)
mt.mailfrom(c, "<x@example.net>")
mt.rcptto(c, "<bob@example.com>")
mt.eom(c)
check(mt.getreply(c) == SMFIR_CONTINUE and not mt.eom_check(c, MT_RCPTDELETE, "<x@example.net>"), "after abort: a clean message")
mt.disconnect(c)
EOF
miltertest -s "$T/t.lua" 2>&1 | sed 's/^/    /;s/^    \(ok\|not ok\) /\1 /' >"$T/mt.out"
cat "$T/mt.out"
grep -q "^ok - after abort" "$T/mt.out" || echo "not ok - miltertest script did not finish"
like "$(cat "$T/milter.log")" 'RCPT reject client=192.0.2.1 sender=<x@example.net> rule="Old domain"' "milter logs decisions with the rule"
like "$(cat "$T/milter.log")" 'DATA reject .* rule="Reject executables" line=[0-9]+ 550 5.7.1 No executables, 100% sure' "end-of-data reject logged with its reply"
like "$(cat "$T/milter.log")" 'DATA reject .* rule="Big" line=[0-9]+ 552 5.3.4 Big and secret' "size and body rule was the one"

# reload: a new rule applies without a restart; a broken edit keeps the rules
{ printf 'rule "Now"\n    sender *@now.example\n    reject 550 5.7.1 "Now rejected"\n'; cat "$C/rules"; } >"$T/new" && cat "$T/new" >"$C/rules"
sleep 1.1
cat >"$T/t2.lua" <<EOF
local c = mt.connect("unix:$S", 20, 0.1)
mt.conninfo(c, "h", "192.0.2.1")
mt.mailfrom(c, "<x@now.example>")
if mt.getreply(c) == SMFIR_REPLYCODE then mt.echo("ok - edited rules apply without a restart") else mt.echo("not ok - edited rules apply without a restart") end
mt.disconnect(c)
EOF
miltertest -s "$T/t2.lua" 2>&1
printf 'rule "Broken"\n    frobnicate\n' >>"$C/rules"
sleep 1.1
cat >"$T/t3.lua" <<EOF
local c = mt.connect("unix:$S", 20, 0.1)
mt.conninfo(c, "h", "192.0.2.1")
mt.mailfrom(c, "<x@now.example>")
if mt.getreply(c) == SMFIR_REPLYCODE then mt.echo("ok - broken edit: last good rules stay in force") else mt.echo("not ok - broken edit: last good rules stay in force") end
mt.disconnect(c)
EOF
miltertest -s "$T/t3.lua" 2>&1
like "$(cat "$T/milter.log")" "rules:[0-9]+: unknown keyword \"frobnicate\"" "broken edit logged with file:line"
