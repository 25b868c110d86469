"""bench/lib/idle.py PORT N PID: opens N connections to PORT and reads each one's greeting,
then (all still open) sends one message in a new session and reads the gateway's (PID)
VmRSS. Prints "greeted N, new session REPLY, rss_kib BEFORE AFTER"."""
import resource, selectors, smtplib, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1

before = rss()
sel = selectors.DefaultSelector()
socks, greeted, deadline = [], 0, time.time() + 120
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
    # Read greetings as they come, so the backlog never fills.
    for key, _ in sel.select(timeout=0):
        if key.fileobj.recv(512).startswith(b"220"):
            greeted += 1
        sel.unregister(key.fileobj)
while greeted < n and time.time() < deadline:
    events = sel.select(timeout=1)
    for key, _ in events:
        data = key.fileobj.recv(512)
        if data.startswith(b"220"):
            greeted += 1
        sel.unregister(key.fileobj)
    if not events and not sel.get_map():
        break
time.sleep(1)
after = rss()
try:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.example.net", timeout=30) as c:
        code = c.sendmail("a@example.net", ["rcpt@example.org"], b"Subject: while idle\r\n\r\nhello\r\n") and "refused" or "250"
except Exception as e:
    code = f"failed ({e})"
print(f"greeted {greeted}, new session {code}, rss_kib {before} {after}")
for s in socks:
    s.close()
