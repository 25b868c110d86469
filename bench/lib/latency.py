"""bench/lib/latency.py PORT N MESSAGE_FILE: N sessions one after another (connect, EHLO
mx.example.net, one message from a@example.net to rcpt@example.org, QUIT); prints the
times from connect to the reply after the final dot, in ms: "p50 p99 max"."""
import smtplib, sys, time
port, n, msg = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
times = []
for i in range(n):
    t = time.perf_counter()
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mx.example.net", timeout=30)
    s.sendmail("a@example.net", ["rcpt@example.org"], msg)
    times.append((time.perf_counter() - t) * 1000)
    s.quit()
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{pick(0.5):.2f} {pick(0.99):.2f} {times[-1]:.2f}")
