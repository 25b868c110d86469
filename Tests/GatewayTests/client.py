#!/usr/bin/env python3
"""Test client for MailGate's end-to-end tests.

  client.py smtplib  < '{"port":..., "helo":..., "from":..., "to":[...], "data_b64":..., "mail_options":[...]}'
      sends one message with Python's smtplib; prints JSON with the outcome.
  client.py raw < '{"port":..., "steps":[{"send": "...", "replies": N}, ...]}'
      reads the greeting, then for each step sends the bytes (latin-1) and reads N replies;
      prints JSON: {"greeting": "...", "replies": [[...], ...], "closed": bool}
Every socket has a timeout, so a test can never hang.
"""
import base64, json, smtplib, socket, sys, time


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
    s = socket.create_connection((args.get("host", "127.0.0.1"), args["port"]), timeout=args.get("timeout", 20), source_address=src)
    f = s.makefile("rb")
    out = {"greeting": read_reply(f), "replies": [], "closed": False}
    for step in args["steps"]:
        if step.get("sleep"):
            time.sleep(step["sleep"])
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


if __name__ == "__main__":
    {"raw": raw, "smtplib": send}[sys.argv[1]](json.loads(sys.stdin.read()))
