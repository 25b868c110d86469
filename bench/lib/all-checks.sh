# Sourced by bench scripts: the "every check on" setup, in one place.
#   all_checks_fixtures DIR   writes into DIR:
#     keys/            an RSA key pair (sel._domainkey.example.net)
#     signed.eml       a 4 KiB message DKIM-signed by dkimpy (CRLF line ends)
#     signed.lf        the same with LF line ends, for `smtp-source -F` (which adds the CRs)
#     fixtures         DNS answers: DKIM key, SPF (ip4:127.0.0.0/8), PTR and A for
#                      127.0.0.1 = mx.example.net, MX, the two DNSBL zones with test points
#     lists/grey-clients.txt   127.0.0.0/8 on the greylist's allow list
#     policy.yaml      dnsbl (two zones), rdns, helo, spf, dkim, greylist, size, and the
#                      shipped rule files
# The client must say HELO mx.example.net and send from a@example.net (or any
# @example.net) from 127.0.0.1, and must not be in authorizedAddresses.
#   all_checks_dns DIR        starts `mailgate dns serve-fixtures` on DIR/fixtures (needs
#                             $MAILGATE); sets DNS_PID and DNS_PORT.
all_checks_fixtures() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  /usr/bin/python3 "$root/Tests/MailAuthTests/dkimtool.py" keys "$dir/keys" >/dev/null
  local body
  body=$(python3 -c 'print("\r\n".join(["x" * 76] * 50))')
  printf 'From: a@example.net\r\nTo: b@example.org\r\nSubject: bench\r\nDate: Fri, 04 Dec 2026 00:00:00 +0000\r\nMessage-ID: <bench@example.net>\r\n\r\n%s\r\n' "$body" > "$dir/plain.eml"
  python3 - "$dir" "$root" <<'PY'
import base64, json, subprocess, sys
d, root = sys.argv[1], sys.argv[2]
req = {"message_b64": base64.b64encode(open(d + "/plain.eml", "rb").read()).decode(), "key": d + "/keys/rsa2048.pem",
       "selector": "sel", "domain": "example.net", "algorithm": "rsa-sha256"}
out = subprocess.run(["/usr/bin/python3", root + "/Tests/MailAuthTests/dkimtool.py", "sign"], input=json.dumps(req).encode(),
                     capture_output=True, check=True).stdout
signed = base64.b64decode(out)
open(d + "/signed.eml", "wb").write(signed)
open(d + "/signed.lf", "wb").write(signed.replace(b"\r\n", b"\n"))
txt = open(d + "/keys/rsa2048.txt").read().strip()
chunks = " ".join('"%s"' % txt[i:i + 250] for i in range(0, len(txt), 250))
open(d + "/fixtures", "w").write(f"""sel._domainkey.example.net. 300 IN TXT {chunks}
example.net. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
1.0.0.127.in-addr.arpa. 300 IN PTR mx.example.net.
mx.example.net. 300 IN A 127.0.0.1
example.net. 300 IN MX 10 mx.example.net.
2.0.0.127.zen.test. 300 IN A 127.0.0.2
2.0.0.127.bl.test. 300 IN A 127.0.0.2
zen.test SOA 300
bl.test SOA 300
example.net SOA 300
""")
PY
  mkdir -p "$dir/lists"
  echo "127.0.0.0/8" > "$dir/lists/grey-clients.txt"
  cat > "$dir/policy.yaml" <<YAML
name: everything
description: every check on
checks:
  size: {}
  helo: {reject: false, score: 0, literalMustMatchClient: false}
  rdns: {requireConfirmed: off}
  spf: {fail: reject, softfailScore: 2}
  dkim: {}
  dnsbl:
    zones:
      - {zone: zen.test}
      - {zone: bl.test, action: score, score: 4}
  greylist:
    allow: {clients: lists/grey-clients.txt}
rules:
  - $root/rules/base.rules
  - $root/rules/dkim.rules
  - $root/rules/helo.rules
thresholds: {header: 6, reject: 15}
YAML
}

all_checks_dns() {
  local dir=$1
  "$MAILGATE" dns serve-fixtures "$dir/fixtures" > "$dir/dns.out" 2>&1 &
  DNS_PID=$!
  for _ in $(seq 100); do [ -s "$dir/dns.out" ] && break; sleep 0.05; done
  DNS_PORT=$(head -1 "$dir/dns.out" | cut -d: -f2)
  [ -n "$DNS_PORT" ] || { echo "the DNS fixture server did not start: $(cat "$dir/dns.out")" >&2; return 1; }
}
