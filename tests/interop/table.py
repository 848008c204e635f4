"""Summarises an interop run: the pass/fail table, the reasons for NA/SKIP/FAIL.

Usage: python3 table.py WORK_DIR [--markdown FILE]

Reads WORK_DIR/results.tsv (client, backend, check, status, reason; check "*" with
status SKIP stands for every check of that cell), WORK_DIR/expected.tsv (the
client/backend cells and extras that were run), WORK_DIR/versions.tsv and
WORK_DIR/meta.tsv. A check a client should have printed but did not is a FAIL.
Exits 1 if anything FAILed.
"""

import argparse
import collections
import os

CHECKS = ["text", "binary", "big_1mib", "frag_c2b", "frag_b2c", "ping_c2b", "ping_b2c",
          "subprotocol", "deflate", "close_c2b", "close_b2c"]
SHORT = {"PASS": "ok", "FAIL": "FAIL", "NA": "n/a", "SKIP": "skip"}


def read_tsv(path, ncols):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= ncols - 1 and parts[0]:
                    rows.append((parts + [""] * ncols)[:ncols])
    return rows


def collect(work):
    got = {}
    for client, backend, check, status, reason in read_tsv(os.path.join(work, "results.tsv"), 5):
        got.setdefault((client, backend, check), (status, reason))  # the first line wins
    cells, extras = [], []
    for kind, client, backend, checks in read_tsv(os.path.join(work, "expected.tsv"), 4):
        names = CHECKS if kind == "cell" else checks.split(",")
        results = {}
        for name in names:
            r = got.get((client, backend, name)) or got.get((client, backend, "*"))
            results[name] = r or ("FAIL", f"no result printed (see .work/logs/{client}-{backend}.*)")
        (cells if kind == "cell" else extras).append((client, backend, results))
    return cells, extras


def render(cells, extras, versions, meta, markdown):
    out = []
    head = ["client \\ backend"] + CHECKS
    rows = [[f"{c} x {b}"] + [SHORT[r[n][0]] for n in CHECKS] for c, b, r in cells]
    if markdown:
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
        fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
        out.append(fmt(head))
        out.append(fmt(["-" * w for w in widths]))
        out += [fmt(r) for r in rows]
    if extras:
        out.append("")
        out.append("Browser extras:" if not markdown else "**Browser extras**")
        out.append("")
        for c, b, r in extras:
            for name, (status, reason) in r.items():
                out.append(f"{'- ' if markdown else '  '}{name}: {status} {reason}")
    counts = collections.Counter()
    na = collections.defaultdict(list)
    fails = []
    for c, b, r in cells + extras:
        for name, (status, reason) in r.items():
            counts[status] += 1
            if status in ("NA", "SKIP"):
                where = na[(status, name if status == "NA" else "*", reason)]
                if f"{c} x {b}" not in where:
                    where.append(f"{c} x {b}")
            elif status == "FAIL":
                fails.append(f"{c} x {b} {name}: {reason}")
    bullet = "- " if markdown else "  "
    if na:
        out.append("")
        out.append("**NA / SKIP, and why**" if markdown else "NA / SKIP, and why:")
        out.append("")
        for (status, name, reason), where in sorted(na.items()):
            what = f"{status} {name}" if status == "NA" else "SKIP"
            out.append(f"{bullet}{what} ({', '.join(where)}): {reason}")
    if fails:
        out.append("")
        out.append("**FAILED**" if markdown else "FAILED:")
        out.append("")
        out += [bullet + f for f in fails]
    if versions:
        out.append("")
        out.append("**Stacks**" if markdown else "Stacks:")
        out.append("")
        out += [f"{bullet}{k}: {v}" for k, v in versions]
    if meta:
        out.append("")
        out += [f"{bullet}{k}: {v}" for k, v in meta]
    if markdown:
        out += ["", "<details><summary>Every check's line</summary>", "",
                "| cell | check | status | reason |", "|---|---|---|---|"]
        for c, b, r in cells + extras:
            for name, (status, reason) in r.items():
                out.append(f"| {c} x {b} | {name} | {status} | {reason.replace('|', '/')} |")
        out += ["", "</details>"]
    out.append("")
    skipped = counts["NA"] + counts["SKIP"]
    out.append(f"interop: {counts['PASS']} passed, {counts['FAIL']} failed, {skipped} skipped")
    return "\n".join(out) + "\n", counts["FAIL"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--markdown")
    a = p.parse_args()
    cells, extras = collect(a.work)
    versions = [tuple(r) for r in read_tsv(os.path.join(a.work, "versions.tsv"), 2)]
    meta = [tuple(r) for r in read_tsv(os.path.join(a.work, "meta.tsv"), 2)]
    text, failed = render(cells, extras, versions, meta, markdown=False)
    print(text, end="")
    if a.markdown:
        md, _ = render(cells, extras, versions, meta, markdown=True)
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(md)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
