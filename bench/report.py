#!/usr/bin/python3
"""Turns run.sh's measurements into the Markdown report (stdout).

usage: report.py RESULTS_TSV META_FILE

RESULTS_TSV columns (tab-separated, no header):
  key  label  section  conns  wrk_output_file  user_ticks  sys_ticks  clk_tck  hwm_kb  token_requests
section is "https" (plain HTTP in, HTTPS out: the path being compared) or "plain" (plain HTTP
in and out: tinyproxy's path) or "direct" (no proxy). *_ticks/hwm_kb are "-" for direct rows,
token_requests is "-" except for the oauth2 row.
META_FILE holds the lines printed above the table (date, machine, versions, settings).
"""
import re
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def dur_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else float("nan")


def parse_wrk(path):
    out = {"rps": float("nan"), "p50": float("nan"), "p99": float("nan"), "requests": 0,
           "errors": 0, "closes": 0, "secs": float("nan")}
    text = open(path).read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["secs"] = dur_ms(m.group(2) + m.group(3)) / 1000.0
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+\w+)" % pct, text, re.M)
        if m:
            out[key] = dur_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        # A read error is the server closing the connection (e.g. tinyproxy, which has no client
        # keep-alive, after every response): wrk reconnects; the response itself was counted.
        connect, read, write, timeout = (int(x) for x in m.groups())
        out["errors"] += connect + write + timeout
        out["closes"] += read
    return out


def fmt(x, nd=2):
    if x is None or x != x:
        return "—"
    return "%.*f" % (nd, x)


def main():
    rows = []
    for line in open(sys.argv[1]):
        f = line.rstrip("\n").split("\t")
        if len(f) < 10:
            continue
        key, label, section, conns, wrkfile, uticks, sticks, clk, hwm, tokens = f[:10]
        r = {"key": key, "label": label, "section": section, "conns": int(conns),
             "tokens": tokens}
        r.update(parse_wrk(wrkfile))
        r["cpu_s"] = (int(uticks) + int(sticks)) / int(clk) if uticks != "-" else None
        r["user_s"] = int(uticks) / int(clk) if uticks != "-" else None
        r["sys_s"] = int(sticks) / int(clk) if sticks != "-" else None
        r["hwm_mib"] = int(hwm) / 1024.0 if hwm != "-" else None
        r["cpu10k"] = (r["cpu_s"] / r["requests"] * 10000.0
                       if r["cpu_s"] is not None and r["requests"] else None)
        r["util"] = (100.0 * r["cpu_s"] / r["secs"]
                     if r["cpu_s"] is not None and r["secs"] == r["secs"] else None)
        rows.append(r)

    def find(key, conns):
        for r in rows:
            if r["key"] == key and r["conns"] == conns:
                return r
        return None

    print(open(sys.argv[2]).read().rstrip("\n"))
    print()
    print("| path | proxy | conns | req/s | p50 ms | p99 ms | errors | proxy CPU s / 10k req "
          "(user + sys) | proxy core busy | peak RSS MiB | req/s vs nginx | CPU/req vs nginx |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    section_name = {"https": "HTTP in → HTTPS out", "plain": "HTTP in → HTTP out (different path)",
                    "direct": "no proxy"}
    for r in rows:
        ng = find("nginx", r["conns"])
        rps_ratio = r["rps"] / ng["rps"] if ng and ng["rps"] else None
        cpu_ratio = (r["cpu10k"] / ng["cpu10k"]
                     if ng and r["cpu10k"] is not None and ng["cpu10k"] else None)
        if r["section"] == "direct":
            rps_ratio = cpu_ratio = None
        errors = "%d" % r["errors"]
        if r["closes"]:
            errors += " (%d closes)" % r["closes"]
        cpu = fmt(r["cpu10k"], 3)
        if r["cpu10k"] is not None and r["requests"]:
            cpu += " (%s + %s)" % (fmt(r["user_s"] / r["requests"] * 1e4, 3),
                                   fmt(r["sys_s"] / r["requests"] * 1e4, 3))
        print("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            section_name.get(r["section"], r["section"]), r["label"], r["conns"],
            fmt(r["rps"], 0), fmt(r["p50"], 3), fmt(r["p99"], 3), errors,
            cpu, (fmt(r["util"], 0) + "%") if r["util"] is not None else "—",
            fmt(r["hwm_mib"], 1), (fmt(rps_ratio, 2) + "×") if rps_ratio else "—",
            (fmt(cpu_ratio, 2) + "×") if cpu_ratio else "—"))
    print()

    lines = []
    for c in sorted({r["conns"] for r in rows}):
        a, e = find("authproxy", c), find("authproxy-oauth2", c)
        if a and e:
            rr = e["rps"] / a["rps"] if a["rps"] else None
            cr = e["cpu10k"] / a["cpu10k"] if a["cpu10k"] and e["cpu10k"] is not None else None
            lines.append("- %d conn: oauth2 token requests over the proxy's lifetime "
                         "(readiness check + warm-up + measured run, %d requests measured): "
                         "**%s**; throughput vs static **%s×**, CPU per request vs static "
                         "**%s×**" % (c, e["requests"], e["tokens"], fmt(rr, 2), fmt(cr, 2)))
    if lines:
        print("oauth2 client_credentials (e) vs static token (a):")
        print()
        print("\n".join(lines))
        print()
    if any(r["closes"] for r in rows):
        print("closes: wrk's socket read errors, i.e. the proxy closed the connection after a "
              "response (tinyproxy has no client keep-alive), so each of its requests also pays "
              "for a new TCP connection. They are not failed requests.")
        print()


if __name__ == "__main__":
    main()
