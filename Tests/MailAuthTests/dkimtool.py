#!/usr/bin/python3
"""Test helper: DKIM keys and signatures made with dkimpy (Debian's python3-dkim).

  dkimtool.py keys DIR          writes rsa2048.pem, rsa512.pem, ed25519.key and, for each,
                                NAME.txt: the DNS TXT value "v=DKIM1; k=...; p=..."
  dkimtool.py sign < JSON       {"message_b64", "key": path, "selector", "domain",
                                 "algorithm": "rsa-sha256|rsa-sha1|ed25519-sha256",
                                 "canon": "relaxed/relaxed", "length": bool,
                                 "expired": bool, "future": bool, "identity": "@sub.example"}
                                prints the signed message, base64
"""
import base64, json, os, subprocess, sys, time

import dkim

def keys(d):
    os.makedirs(d, exist_ok=True)
    for bits in (2048, 512):
        pem = os.path.join(d, "rsa%d.pem" % bits)
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", pem, str(bits)], check=True, capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", pem, "-pubout", "-outform", "DER"], check=True, capture_output=True).stdout
        with open(os.path.join(d, "rsa%d.txt" % bits), "w") as f:
            f.write("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    with open(os.path.join(d, "ed25519.key"), "w") as f:
        f.write(base64.b64encode(bytes(sk)).decode())
    with open(os.path.join(d, "ed25519.txt"), "w") as f:
        f.write("v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode())

def sign(a):
    msg = base64.b64decode(a["message_b64"])
    key = open(a["key"], "rb").read()
    hc, bc = a.get("canon", "relaxed/relaxed").split("/")
    real_time = time.time
    if a.get("expired"):
        dkim.time.time = lambda: real_time() - 10 * 86400
        orig = dkim.DKIM.gen_header
        def with_x(self, fields, *rest, **kw):
            fields = fields[:-1] + [(b"x", str(int(real_time() - 9 * 86400)).encode())] + fields[-1:]
            return orig(self, fields, *rest, **kw)
        dkim.DKIM.gen_header = with_x
    if a.get("future"):
        dkim.time.time = lambda: real_time() + 86400
    sig = dkim.sign(msg, a["selector"].encode(), a["domain"].encode(), key,
                    canonicalize=(hc.encode(), bc.encode()),
                    signature_algorithm=a.get("algorithm", "rsa-sha256").encode(),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                    length=a.get("length", False),
                    identity=a["identity"].encode() if a.get("identity") else None)
    dkim.time.time = real_time
    sys.stdout.write(base64.b64encode(sig + msg).decode())

if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(sys.argv[2])
    else:
        sign(json.load(sys.stdin))
