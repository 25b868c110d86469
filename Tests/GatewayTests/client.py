#!/usr/bin/env python3
"""Test client for MailGate's end-to-end tests.

  client.py smtplib  < '{"port":..., "helo":..., "from":..., "to":[...], "data_b64":..., "mail_options":[...]}'
      sends one message with Python's smtplib; prints JSON with the outcome.
  client.py raw < '{"port":..., "steps":[{"send": "...", "replies": N}, ...]}'
      reads the greeting, then for each step sends the bytes (latin-1) and reads N replies;
      prints JSON: {"greeting": "...", "replies": [[...], ...], "closed": bool}
      A step {"tls": {"cafile": ..., "server_name": ...}} does a TLS handshake on the
      connection (after STARTTLS's 220); "implicit_tls" with the same keys does one first.
      The outcome is in "tls": [{"version", "cipher"} or {"error"}].
Every socket has a timeout, so a test can never hang.
"""
import base64, json, smtplib, socket, ssl, sys, time


def read_reply(f):
    lines = []
    while True:
        line = f.readline(4096)
        if not line:
            return None if not lines else "\n".join(lines)
        line = line.decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


def raw(args):
    src = (args["source"], 0) if args.get("source") else None
    if args.get("unix"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(args.get("timeout", 20))
        s.connect(args["unix"])
    else:
        s = socket.create_connection((args.get("host", "127.0.0.1"), args["port"]), timeout=args.get("timeout", 20), source_address=src)
    out = {"replies": [], "closed": False, "tls": []}
    if args.get("implicit_tls") is not None:
        s = handshake(s, args["implicit_tls"], out)
        if s is None:
            out["closed"] = True
            print(json.dumps(out))
            return
    if args.get("early"):
        s.sendall(args["early"].encode("latin-1"))
    f = s.makefile("rb")
    try:
        out["greeting"] = read_reply(f)
    except (socket.timeout, OSError):
        out["greeting"] = None
    for step in args["steps"]:
        if step.get("sleep"):
            time.sleep(step["sleep"])
        if step.get("tls") is not None:
            s = handshake(s, step["tls"], out)
            if s is None:
                out["closed"] = True
                break
            f = s.makefile("rb")
            continue
        if step.get("send") is not None:
            try:
                s.sendall(step["send"].encode("latin-1"))
            except OSError:
                out["closed"] = True
                break
        got = []
        for _ in range(step.get("replies", 1)):
            try:
                r = read_reply(f)
            except ConnectionResetError:
                # The server closed with our bytes unread: the kernel says so with a reset.
                r = None
            except (socket.timeout, OSError):
                got.append("TIMEOUT")
                out["replies"].append(got)
                print(json.dumps(out))
                return
            if r is None:
                out["closed"] = True
                break
            got.append(r)
        out["replies"].append(got)
        if out["closed"]:
            break
    if not out["closed"]:
        s.settimeout(args.get("close_wait", 0.2))
        try:
            out["closed"] = s.recv(1) == b""
        except (socket.timeout, OSError):
            pass
    print(json.dumps(out))


def handshake(s, opts, out):
    ctx = ssl.create_default_context(cafile=opts.get("cafile"))
    ctx.check_hostname = bool(opts.get("check_hostname"))
    if not opts.get("cafile"):
        ctx.verify_mode = ssl.CERT_NONE
    if opts.get("max_version") == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        t = ctx.wrap_socket(s, server_hostname=opts.get("server_name"))
        cert = t.getpeercert()
        subject = dict(x[0] for x in cert.get("subject", ())) if cert else {}
        out["tls"].append({"version": t.version(), "cipher": t.cipher()[0], "subject_cn": subject.get("commonName", "")})
        return t
    except (ssl.SSLError, OSError) as e:
        out["tls"].append({"error": str(e)})
        return None


def send(args):
    out = {}
    try:
        src = (args["source"], 0) if args.get("source") else None
        c = smtplib.SMTP(args.get("host", "127.0.0.1"), args["port"], local_hostname=args.get("helo", "client.example.org"), timeout=30,
                         source_address=src)
        data = base64.b64decode(args["data_b64"])
        refused = c.sendmail(args["from"], args["to"], data, mail_options=args.get("mail_options", []))
        out["ok"] = True
        out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
        c.quit()
    except smtplib.SMTPRecipientsRefused as e:
        out = {"ok": False, "error": "recipients", "refused": {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}}
    except smtplib.SMTPSenderRefused as e:
        out = {"ok": False, "error": "sender", "code": e.smtp_code, "text": e.smtp_error.decode()}
    except smtplib.SMTPDataError as e:
        out = {"ok": False, "error": "data", "code": e.smtp_code, "text": e.smtp_error.decode()}
    except smtplib.SMTPResponseException as e:
        out = {"ok": False, "error": "response", "code": e.smtp_code, "text": e.smtp_error.decode()}
    except Exception as e:  # noqa: BLE001 - report anything else to the test
        out = {"ok": False, "error": type(e).__name__, "text": str(e)}
    print(json.dumps(out))


def load(args):
    """Sends `count` messages over `concurrency` threads, one per connection, each with its
    own Message-ID; for each, the final reply code (0 when the connection failed). Stops
    sending new messages after `seconds`."""
    import threading
    results = {}
    lock = threading.Lock()
    next_id = [0]
    deadline = time.time() + args.get("seconds", 30)

    def worker():
        while time.time() < deadline:
            with lock:
                if next_id[0] >= args["count"]:
                    return
                i = next_id[0]
                next_id[0] += 1
            mid = "<load-%d@example.net>" % i
            msg = ("Subject: load %d\r\nMessage-ID: %s\r\n\r\nbody %d\r\n" % (i, mid, i)).encode()
            code = 0
            try:
                c = smtplib.SMTP("127.0.0.1", args["port"], local_hostname="client.example.org", timeout=10)
                c.sendmail("a@example.net", ["b@example.org"], msg)
                code = 250
                try:
                    c.quit()
                except Exception:  # noqa: BLE001 - the answer that counts was the 250
                    pass
            except smtplib.SMTPResponseException as e:
                code = e.smtp_code
            except smtplib.SMTPRecipientsRefused as e:
                code = list(e.recipients.values())[0][0]
            except Exception:  # noqa: BLE001 - a dropped connection: no answer
                code = 0
            with lock:
                results[mid] = code

    threads = [threading.Thread(target=worker) for _ in range(args.get("concurrency", 10))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"results": results}))


def flood(args):
    """Opens `count` connections at once and reads each greeting; counts the reply codes."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args["count"] + 100)), hard))
    socks, codes = [], {}
    for _ in range(args["count"]):
        try:
            s = socket.create_connection(("127.0.0.1", args["port"]), timeout=10)
            socks.append(s)
        except OSError:
            codes["connect-failed"] = codes.get("connect-failed", 0) + 1
    for s in socks:
        try:
            g = s.makefile("rb").readline(512).decode("latin-1")[:3] or "closed"
        except OSError:
            g = "error"
        codes[g] = codes.get(g, 0) + 1
    for s in socks:
        s.close()
    print(json.dumps({"codes": codes}))


if __name__ == "__main__":
    {"raw": raw, "smtplib": send, "load": load, "flood": flood}[sys.argv[1]](json.loads(sys.stdin.read()))
