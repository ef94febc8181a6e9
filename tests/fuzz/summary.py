"""Summarize a fuzz run's log (``CARTREG_FUZZ_LOG``, one JSON line per case) as Markdown."""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def summarize(log: Path) -> str:
    cases: dict[str, list[dict[str, object]]] = defaultdict(list)
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        cases[str(entry["test"])].append(entry)
    rows = [
        "| fuzz test | cases | exit 0 | exit 1 | exit 2 | seconds | most frequent findings |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for test, entries in sorted(cases.items()):
        codes = Counter(int(str(e["exit"])) for e in entries)
        seconds = sum(float(str(e["seconds"])) for e in entries)
        found = Counter(f for e in entries for f in e["findings"])  # type: ignore[attr-defined]
        top = ", ".join(f"{rule} {n}" for rule, n in found.most_common(4))
        rows.append(
            f"| {test} | {len(entries):,} | {codes[0]:,} | {codes[1]:,} | {codes[2]:,} "
            f"| {seconds:,.0f} | {top} |"
        )
    total = sum(len(e) for e in cases.values())
    rows.append(
        f"\n{total:,} cases; every one kept the contract (the run stops at the first that does not)."
    )
    return "\n".join(rows)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
