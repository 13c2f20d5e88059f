#!/usr/bin/env python3
"""http_ingest.py — test helper for the http ingest source (tests/integration/http_ingest.sh, bench/).

  gen DIR --clients N --batches B --size S [--seed X]
        write DIR/c<i>/b<j>.json: client i's batches (JSON arrays of events), keys disjoint per
        client, a mix of inserts, partial updates, key changes and deletes over two declared tables
        (public.accounts, app.events); DIR/x/ holds extra batches for the auth/backpressure phases.
  corpus FILE
        write malformed requests, one a line: "<expected status>\t<expected path>\t<body>".
  count DIR            number of events in every batch under DIR
  check DIR --sqlite DB --pg DSN
        the state every batch under DIR leaves (each client's batches in order), compared row for
        row with the SQLite and PostgreSQL sinks (values compared by declared type; PostgreSQL
        column types checked); exit 1 with a report on any difference.
"""
import argparse, glob, json, os, random, sqlite3, subprocess, sys
from decimal import Decimal

TABLES = {
    "public.accounts": {"cols": [("id", "bigint"), ("owner", "text"), ("balance", "numeric"), ("active", "boolean"),
                                 ("updated", "timestamptz"), ("tags", "jsonb")], "key": ["id"]},
    "app.events": {"cols": [("stream", "text"), ("n", "integer"), ("kind", "varchar"), ("at", "timestamp"),
                            ("score", "float8"), ("ref", "uuid")], "key": ["stream", "n"]},
}
PG_TYPES = {"bigint": "bigint", "text": "text", "numeric": "numeric", "boolean": "boolean",
            "timestamptz": "timestamp with time zone", "jsonb": "jsonb", "integer": "integer",
            "varchar": "character varying", "timestamp": "timestamp without time zone", "float8": "double precision",
            "uuid": "uuid"}


def rand_row(r, table, key):
    if table == "public.accounts":
        return {"id": key[0], "owner": r.choice(["ann", "bob", "Zoë", "o'hara", "李"]) + str(r.randint(0, 99)),
                "balance": r.choice([str(Decimal(r.randint(-10**8, 10**8)) / 100), r.randint(-1000, 1000), None]),
                "active": r.choice([True, False, None]),
                "updated": "2024-0%d-1%dT%02d:%02d:%02d.%03d%s" % (r.randint(1, 9), r.randint(0, 9), r.randint(0, 23),
                                                                   r.randint(0, 59), r.randint(0, 59), r.randint(0, 999),
                                                                   r.choice(["Z", "+02:00", "-05:30"])),
                "tags": r.choice([{"a": [1, 2, {"b": None}]}, ["x", 1.5], "s", None, {}])}
    return {"stream": key[0], "n": key[1], "kind": r.choice(["click", "view", "buy", None]),
            "at": "2023-12-%02d %02d:00:00.25" % (r.randint(1, 28), r.randint(0, 23)),
            "score": r.choice([0.1, -2.5e10, 3, 1e-7, None]), "ref": "%08x-1111-4222-8333-%012x" % (r.randint(0, 2**32 - 1), r.randint(0, 2**48 - 1))}


def keys_of(table, row):
    return tuple(row[k] for k in TABLES[table]["key"])


def gen_client(r, prefix, nb, size, keybase):
    """Batches of events for one client; returns a list of batches (lists of events)."""
    live = {"public.accounts": {}, "app.events": {}}
    nextkey = [0]
    batches = []
    for b in range(nb):
        evs = []
        for e in range(size):
            cid = "%s-b%03d-e%03d" % (prefix, b, e)
            table = r.choice(list(TABLES))
            rows = live[table]
            choice = r.random()
            if not rows or choice < 0.35:
                nextkey[0] += 1
                key = (keybase + nextkey[0],) if table == "public.accounts" else ("s%d" % keybase, nextkey[0])
                row = rand_row(r, table, key)
                rows[key] = row
                evs.append({"table": table, "op": "insert", "row": row, "correlation_id": cid,
                            "event_time": "2024-01-01T00:00:00Z"})
            elif choice < 0.75:
                key = r.choice(list(rows))
                full = rand_row(r, table, key)
                cols = [c for c, _ in TABLES[table]["cols"] if c not in TABLES[table]["key"]]
                part = {c: full[c] for c in r.sample(cols, r.randint(1, len(cols)))}
                ev = {"table": table, "op": "update", "correlation_id": cid}
                if r.random() < 0.5:
                    ev["row"] = dict(part, **dict(zip(TABLES[table]["key"], key)))
                else:
                    ev["key"] = dict(zip(TABLES[table]["key"], key))
                    ev["row"] = part
                rows[key].update(part)
                evs.append(ev)
            elif choice < 0.85 and table == "public.accounts":  # key change
                key = r.choice(list(rows))
                nextkey[0] += 1
                new = (keybase + nextkey[0],)
                evs.append({"table": table, "op": "update", "key": {"id": key[0]}, "row": {"id": new[0]},
                            "correlation_id": cid})
                rows[new] = dict(rows.pop(key), id=new[0])
            else:
                key = r.choice(list(rows))
                evs.append({"table": table, "op": "delete", "key": dict(zip(TABLES[table]["key"], key)),
                            "correlation_id": cid})
                del rows[key]
        batches.append(evs)
    return batches


def cmd_gen(a):
    r = random.Random(a.seed)
    for i in range(a.clients + 1):
        name = "c%d" % i if i < a.clients else "x"
        d = os.path.join(a.dir, name)
        os.makedirs(d, exist_ok=True)
        nb = a.batches if i < a.clients else 40
        for j, evs in enumerate(gen_client(r, name, nb, a.size, (i + 1) * 10**6)):
            with open(os.path.join(d, "b%03d.json" % j), "w") as f:
                json.dump(evs, f)


def all_batches(d):
    out = []
    for cdir in sorted(glob.glob(os.path.join(d, "*"))):
        if os.path.isdir(cdir):
            out.append([json.load(open(f)) for f in sorted(glob.glob(os.path.join(cdir, "b*.json")))])
    return out


def expected(d):
    state = {t: {} for t in TABLES}
    for client in all_batches(d):
        for batch in client:
            for ev in batch:
                t = ev["table"]
                rows = state[t]
                kc = TABLES[t]["key"]
                if ev["op"] == "insert":
                    row = {c: ev["row"].get(c) for c, _ in TABLES[t]["cols"]}
                    rows[keys_of(t, row)] = row
                elif ev["op"] == "update":
                    old = tuple((ev.get("key") or ev["row"])[k] for k in kc)
                    row = dict(rows.pop(old))
                    row.update(ev["row"])
                    rows[keys_of(t, row)] = row
                else:
                    del rows[tuple(ev["key"][k] for k in kc)]
    return state


def norm(typ, v):
    """A value (expected JSON, or a sink's text/number) in a comparable form."""
    if v is None:
        return None
    if typ == "numeric":
        return Decimal(str(v))
    if typ in ("bigint", "integer"):
        return int(v)
    if typ == "float8":
        return float(v)
    if typ == "boolean":
        return v in (True, 1, "t", "true", "1")
    if typ == "jsonb":
        return json.dumps(json.loads(v), sort_keys=True)  # a sink's jsonb text
    if typ == "timestamptz":
        from datetime import datetime, timezone
        s = str(v).replace("T", " ")
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        if len(s) > 3 and s[-3] in "+-" and s[-6] not in "+-":
            s += ":00"
        return datetime.fromisoformat(s).astimezone(timezone.utc)
    if typ == "timestamp":
        from datetime import datetime
        return datetime.fromisoformat(str(v).replace("T", " "))
    return str(v)


def expected_json(typ, v):
    if typ == "jsonb" and v is not None:
        return json.dumps(v, sort_keys=True)
    return norm(typ, v)


def compare(name, state, fetch):
    bad = []
    for t, spec in TABLES.items():
        cols = spec["cols"]
        got = fetch(t, [c for c, _ in cols])
        exp = {}
        for row in state[t].values():
            exp[keys_of(t, row)] = tuple(expected_json(ty, row[c]) for c, ty in cols)
        have = {}
        for r in got:
            nr = tuple(norm(ty, r[i]) for i, (c, ty) in enumerate(cols))
            k = tuple(r[[c for c, _ in cols].index(kc)] for kc in spec["key"])
            k = tuple(norm(dict(cols)[kc], x) for kc, x in zip(spec["key"], k))
            if k in have:
                bad.append("%s %s: key %r twice" % (name, t, k))
            have[k] = nr
        ek = {tuple(norm(dict(cols)[kc], x) for kc, x in zip(spec["key"], k)): v for k, v in exp.items()}
        for k in ek.keys() - have.keys():
            bad.append("%s %s: missing row %r" % (name, t, k))
        for k in have.keys() - ek.keys():
            bad.append("%s %s: unexpected row %r" % (name, t, k))
        for k in ek.keys() & have.keys():
            if ek[k] != have[k]:
                bad.append("%s %s: row %r differs: expected %r, got %r" % (name, t, k, ek[k], have[k]))
        print("%s %s: %d rows expected, %d present" % (name, t, len(ek), len(have)))
    return bad


def cmd_check(a):
    state = expected(a.dir)
    bad = []
    if a.sqlite:
        db = sqlite3.connect(a.sqlite)
        def fetch_sqlite(t, cols):
            # the sqlite sink names a table schema_name (public.x -> x); try both
            cands = [t.split(".")[1], t.replace(".", "_"), t]
            names = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            name = next((c for c in cands if c in names), None)
            if name is None:
                return []
            return db.execute("select %s from \"%s\"" % (",".join('"%s"' % c for c in cols), name)).fetchall()
        bad += compare("sqlite", state, fetch_sqlite)
    if a.pg:
        env = dict(os.environ, PGTZ="UTC")
        def psql(sql):
            return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", a.pg, "-c", sql], env=env,
                                  check=True, capture_output=True, text=True).stdout
        def fetch_pg(t, cols):
            s, n = t.split(".")
            types = dict(l.split("|") for l in psql("select column_name, data_type from information_schema.columns "
                                                    "where table_schema='%s' and table_name='%s'" % (s, n)).splitlines())
            for c, ty in TABLES[t]["cols"]:
                if types.get(c) != PG_TYPES[ty]:
                    bad.append("pg %s.%s: type %r, expected %r" % (t, c, types.get(c), PG_TYPES[ty]))
            out = psql("select json_agg(json_build_array(%s)) from %s" % (",".join("%s::text" % c for c in cols), t)).strip()
            return [tuple(r) for r in json.loads(out)] if out else []
        bad += compare("pg", state, fetch_pg)
    for b in bad[:40]:
        print("DIFF " + b)
    if bad:
        print("%d differences" % len(bad))
        sys.exit(1)
    print("equal")


def cmd_count(a):
    print(sum(len(b) for c in all_batches(a.dir) for b in c))


def cmd_corpus(a):
    ok = {"table": "public.accounts", "op": "insert", "row": {"id": 1, "owner": "x"}, "correlation_id": "corpus-ok"}
    def ev(**kw):
        e = json.loads(json.dumps(ok))
        for k, v in kw.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e
    row = lambda **kw: dict(ok["row"], **kw)
    cases = [
        ("400", "$", "{not json"),
        ("400", "$", "[]"),
        ("400", "$", "42"),
        ("400", "$[0]", json.dumps(["x"])),
        ("400", "$.correlation_id", json.dumps(ev(correlation_id=None))),
        ("400", "$.correlation_id", json.dumps(ev(correlation_id=""))),
        ("400", "$.correlation_id", json.dumps(ev(correlation_id=7))),
        ("400", "$.correlation_id", json.dumps(ev(correlation_id="x" * 129))),
        ("400", "$.table", json.dumps(ev(table=None))),
        ("400", "$.table", json.dumps(ev(table="public.nope"))),
        ("400", "$.op", json.dumps(ev(op="upsert"))),
        ("400", "$.op", json.dumps(ev(op=None))),
        ("400", "$.colour", json.dumps(dict(ev(), colour=1))),
        ("400", "$.row", json.dumps(ev(row=None))),
        ("400", "$.row", json.dumps(ev(row=[1]))),
        ("400", "$.row.id", json.dumps(ev(row={"owner": "x"}))),
        ("400", "$.row.id", json.dumps(ev(row=row(id="1")))),
        ("400", "$.row.id", json.dumps(ev(row=row(id=None)))),
        ("400", "$.row.owner", json.dumps(ev(row={"id": 1}))),
        ("400", "$.row.owner", json.dumps(ev(row=row(owner=None)))),
        ("400", "$.row.nope", json.dumps(ev(row=row(nope=1)))),
        ("400", "$.row.balance", json.dumps(ev(row=row(balance="12.345")))),
        ("400", "$.row.balance", json.dumps(ev(row=row(balance="1e5")))),
        ("400", "$.row.balance", json.dumps(ev(row=row(balance="abc")))),
        ("400", "$.row.balance", json.dumps(ev(row=row(balance="1234567890123.5")))),
        ("400", "$.row.active", json.dumps(ev(row=row(active="yes")))),
        ("400", "$.row.updated", json.dumps(ev(row=row(updated="2024-05-01 10:00:00")))),
        ("400", "$.row.updated", json.dumps(ev(row=row(updated="2024-02-30T10:00:00Z")))),
        ("400", "$.row.updated", json.dumps(ev(row=row(updated=5)))),
        ("400", "$.event_time", json.dumps(ev(event_time="yesterday"))),
        ("400", "$.key", json.dumps(ev(op="delete", row=None))),
        ("400", "$.row", json.dumps(ev(op="delete", key={"id": 1}))),
        ("400", "$.key.owner", json.dumps(ev(op="update", key={"id": 1, "owner": "x"}, row={"owner": "y"}))),
        ("400", "$.key.id", json.dumps(ev(op="update", key={}, row={"owner": "y"}))),
        ("400", "$.row.id", json.dumps(ev(op="update", row={"owner": "y"}))),
        ("400", "$.row.n", json.dumps({"table": "app.events", "op": "insert", "row": {"stream": "s", "n": 2**31},
                                       "correlation_id": "c"})),
        ("400", "$.row.kind", json.dumps({"table": "app.events", "op": "insert",
                                          "row": {"stream": "s", "n": 1, "kind": "k" * 21}, "correlation_id": "c"})),
        ("400", "$.row.ref", json.dumps({"table": "app.events", "op": "insert",
                                         "row": {"stream": "s", "n": 1, "ref": "not-a-uuid"}, "correlation_id": "c"})),
        ("400", "$.row.at", json.dumps({"table": "app.events", "op": "insert",
                                        "row": {"stream": "s", "n": 1, "at": "2024-01-01T00:00:00Z"}, "correlation_id": "c"})),
        ("400", "$.row.score", json.dumps({"table": "app.events", "op": "insert",
                                           "row": {"stream": "s", "n": 1, "score": "high"}, "correlation_id": "c"})),
        # batches: valid events before and after a bad one; nothing of them may be applied
        ("400", "$[2].row.id", json.dumps([ev(correlation_id="corpus-a", row=row(id=900001)),
                                            ev(correlation_id="corpus-b", row=row(id=900002)),
                                            ev(correlation_id="corpus-c", row=row(id=-0.5)),
                                            ev(correlation_id="corpus-d", row=row(id=900004))])),
        ("400", "$[1].correlation_id", json.dumps([ev(correlation_id="corpus-e", row=row(id=900005)),
                                                    ev(correlation_id="corpus-e", row=row(id=900006))])),
        ("409", "$[1].correlation_id", json.dumps([ev(correlation_id="corpus-f", row=row(id=900007)),
                                                    ev(correlation_id="c0-b000-e000", row=row(id=900008))])),
    ]
    with open(a.file, "w") as f:
        for st, path, body in cases:
            f.write("%s\t%s\t%s\n" % (st, path, body))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen"); g.add_argument("dir"); g.add_argument("--clients", type=int, default=8)
    g.add_argument("--batches", type=int, default=20); g.add_argument("--size", type=int, default=20)
    g.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("check"); c.add_argument("dir"); c.add_argument("--sqlite"); c.add_argument("--pg")
    n = sub.add_parser("count"); n.add_argument("dir")
    k = sub.add_parser("corpus"); k.add_argument("file")
    a = p.parse_args()
    {"gen": cmd_gen, "check": cmd_check, "count": cmd_count, "corpus": cmd_corpus}[a.cmd](a)


if __name__ == "__main__":
    main()
