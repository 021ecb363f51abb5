# ruleproc inside our own pipeline: smtpd-lite runs ruleproc -p (because
# CONFDIR/rules exists) and the chain "ruleproc ... deliver"; rejects
# come back during the dialogue and after DATA, headers and folders land
# in the Maildirs.
. "$TOP/t/lib.sh"
[ -x "$BIN/smtpd-lite" ] && [ -x "$BIN/deliver" ] || { skip "smtpd-lite or deliver not built"; exit 0; }
newconf
C=$T/conf
cat >"$C/rules" <<'EOF'
rule "Old domain"
    recipient eve@example.net
    reject 550 5.1.1 "This address is gone"
rule "Carol is away"
    recipient carol@example.com
    redirect bob@example.com
rule "Executables"
    attachment *.exe
    reject 550 5.7.1 "No executables"
rule "Mark"
    add-header X-Rules checked
    continue
rule "Junk"
    header Subject *viagra*
    tag-subject [SPAM]
    folder Junk
EOF
echo "chain $BIN/ruleproc -c $C $BIN/deliver -c $C" >>"$C/settings"
chmod -R a+rX "$C"
smtp() { # "RCPT addresses" "message lines" -> the server's replies, one a line
	{
		printf 'EHLO client.example.net\r\nMAIL FROM:<x@example.net>\r\n'
		for r in $1; do printf 'RCPT TO:<%s>\r\n' "$r"; done
		printf 'DATA\r\n'
		printf '%b\n' "$2" | sed 's/$/\r/'
		printf '.\r\nQUIT\r\n'
	} | TCPREMOTEIP=198.51.100.7 smtpd-lite -c "$C" 2>>"$T/log" | tr -d '\r'
}
maildir() { cat "$T/mail/$1/new/"* 2>/dev/null; }

o=$(smtp "alice@example.com eve@example.net" 'Subject: cheap viagra\n\nhello')
like "$o" "550 5.1.1 This address is gone" "policy service: recipient rejected at RCPT"
like "$o" "250 2.0.0 Ok" "message accepted for the other recipient"
m=$(ls "$T/mail/alice/.Junk/new/" 2>/dev/null | wc -l)
is "$m" 1 "folder action: filed into alice's .Junk"
m=$(cat "$T/mail/alice/.Junk/new/"* 2>/dev/null)
like "$m" "Subject: \[SPAM\] cheap viagra" "subject tagged in the delivered mail"
like "$m" "X-Rules: checked" "header added in the delivered mail"

o=$(smtp "carol@example.com" 'Subject: hi\n\nfor carol')
like "$(maildir bob)" "for carol" "redirect: carol's mail in bob's Maildir"
is "$(ls "$T/mail/carol/new/" 2>/dev/null | wc -l)" 0 "redirect: nothing for carol"

o=$(smtp "alice@example.com" 'Subject: invoice\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: application/octet-stream; name="a.exe"\n\nTVqQ\n--b--')
like "$o" "554 5.7.1 No executables" "content reject after DATA comes back as 554 with the rule's text"
