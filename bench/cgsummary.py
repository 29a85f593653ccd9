#!/usr/bin/python3
"""Summarises a callgrind dump: instructions per request and where they go (self cost by shared
object), plus the heaviest functions by inclusive cost.

usage: cgsummary.py CALLGRIND_OUT REQUESTS LABEL [TOP]
Prints Markdown.
"""
import os
import re
import sys

path, requests, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
top = int(sys.argv[4]) if len(sys.argv) > 4 else 0

obs, fns = {}, {}
fn_ob = {}
self_cost = {}     # fn id -> self Ir
incl_call = {}     # callee fn id -> inclusive Ir summed over its call sites
total = 0
cur_ob = cur_fn = cur_cfn = None
after_calls = False
name_re = re.compile(r"^(ob|fn|cob|cfn|fl|fi|fe|cfi|cfl)=\((\d+)\)(?: (.*))?$")
with open(path) as f:
    for line in f:
        line = line.rstrip("\n")
        m = name_re.match(line)
        if m:
            kind, ident, name = m.groups()
            if kind in ("ob", "cob") and name:
                obs[ident] = name
            if kind in ("fn", "cfn") and name:
                fns[ident] = name
            if kind == "ob":
                cur_ob = ident
            elif kind == "fn":
                cur_fn = ident
                fn_ob.setdefault(ident, cur_ob)
            elif kind == "cfn":
                cur_cfn = ident
            continue
        if line.startswith("calls="):
            after_calls = True
            continue
        if line.startswith("summary:") or line.startswith("totals:"):
            total = int(line.split()[1])
            continue
        if line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if len(parts) < 2:
                continue
            cost = int(parts[1])
            if after_calls:
                incl_call[cur_cfn] = incl_call.get(cur_cfn, 0) + cost
                after_calls = False
            elif cur_fn is not None:
                self_cost[cur_fn] = self_cost.get(cur_fn, 0) + cost

if total == 0:
    total = sum(self_cost.values())
by_ob = {}
for fid, c in self_cost.items():
    ob = os.path.basename(obs.get(fn_ob.get(fid), "?"))
    ob = re.sub(r"\.so[.\d]*$", "", ob)
    by_ob[ob] = by_ob.get(ob, 0) + c

per = total / requests if requests else float("nan")
print("**%s**: %d instructions over %d requests = **%.1fk instructions per request**" % (
    label, total, requests, per / 1000.0))
print()
print("| object (self cost) | instructions / request | share |")
print("| --- | ---: | ---: |")
for ob, c in sorted(by_ob.items(), key=lambda x: -x[1]):
    if c / total < 0.005:
        continue
    print("| %s | %.1fk | %.0f%% |" % (ob, c / requests / 1000.0, 100.0 * c / total))
print()
if top:
    print("| heaviest functions (inclusive) | instructions / request | share |")
    print("| --- | ---: | ---: |")
    shown = 0
    for fid, c in sorted(incl_call.items(), key=lambda x: -x[1]):
        name = fns.get(fid, fid)
        if c > total:   # recursion artefacts
            continue
        print("| `%s` (%s) | %.1fk | %.0f%% |" % (
            name.split(" ")[0][:70], re.sub(r"\.so[.\d]*$", "", os.path.basename(
                obs.get(fn_ob.get(fid), "?"))), c / requests / 1000.0, 100.0 * c / total))
        shown += 1
        if shown >= top:
            break
    print()
