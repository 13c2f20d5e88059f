#!/usr/bin/env python3
"""http_ingest_load.py URL CLIENTS BATCHES SIZE [TOKEN] — the load of bench/http_ingest.sh: CLIENTS
threads, each with one keep-alive connection, POST BATCHES batches of SIZE insert events (distinct
keys and correlation ids) and wait for each answer. Prints JSON: events, wall seconds, events/s and
acknowledgement latency percentiles (ms) over every request. Any answer but 200 is an error."""
import http.client, json, sys, threading, time
from urllib.parse import urlparse

url, clients, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
token = sys.argv[5] if len(sys.argv) > 5 else None
u = urlparse(url)
lat, errors = [], []
lock = threading.Lock()


def client(c):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    mine = []
    for b in range(batches):
        evs = [{"table": "public.bench", "op": "insert", "correlation_id": "c%d-%d-%d" % (c, b, e),
                "row": {"id": (c * batches + b) * size + e, "a": e, "b": "payload-%d" % e, "c": "2024-05-01T12:00:00Z",
                        "d": "%d.25" % e}} for e in range(size)]
        body = json.dumps(evs)
        t0 = time.perf_counter()
        conn.request("POST", "/v1/events", body, headers)
        r = conn.getresponse()
        r.read()
        mine.append(time.perf_counter() - t0)
        if r.status != 200:
            with lock:
                errors.append(r.status)
            return
    with lock:
        lat.extend(mine)


t0 = time.perf_counter()
th = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
for t in th:
    t.start()
for t in th:
    t.join()
wall = time.perf_counter() - t0
lat.sort()
pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None
print(json.dumps({"events": len(lat) * size, "requests": len(lat), "wall_s": round(wall, 3),
                  "events_per_s": round(len(lat) * size / wall) if wall else None, "p50_ms": pct(0.50),
                  "p95_ms": pct(0.95), "p99_ms": pct(0.99), "errors": errors}))
sys.exit(1 if errors else 0)
