#!/usr/bin/env python3
"""Builds a day-by-day dataset of real chat text from the public IRC logs of the Fluid
project (https://github.com/fluid-project/fluid-irc-logs: #fluid-work, #fluid-tech,
#fluid-design and others, 2008-2020, about 54 MB), for bench/realtext.sh.

Each channel becomes one growing, append-only history file `logs/<channel>.log` (the daily
log files of that channel concatenated in date order), the way a chat app's text export
grows. Snapshot day1 holds the first 65 % of the calendar days, and each of the next days
adds 5 %; day8 holds everything. Only per-day channel logs are used (files whose name ends
in YYYY-MM-DD.log inside a channel folder), not the bulk dumps beside them, so nothing is
counted twice.

usage: realtext.py SOURCE_CHECKOUT OUT_DIR [--days 8]
"""
import argparse
import os
import re
import shutil
import sys

DAILY = re.compile(r"^(?P<chan>#?[A-Za-z0-9_-]+?)[-.](?P<date>\d{4}-\d{2}-\d{2})\.log$")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--days", type=int, default=8)
    args = ap.parse_args()
    logs = {}  # (chan, date) -> [paths]
    for root, _dirs, files in os.walk(args.source):
        if ".git" in root.split(os.sep) or os.path.abspath(root) == os.path.abspath(os.path.join(args.source, "botbot.me")):
            continue
        for name in files:
            m = DAILY.match(name)
            if m:
                chan = m.group("chan").lstrip("#")
                logs.setdefault((chan, m.group("date")), []).append(os.path.join(root, name))
    if not logs:
        print(f"realtext.py: no daily channel logs under {args.source}", file=sys.stderr)
        return 1
    dates = sorted({d for _c, d in logs})
    first = 0.65
    step = (1.0 - first) / max(args.days - 1, 1)
    cuts = [dates[min(len(dates) - 1, int(len(dates) * (first + step * k)) - 1)] for k in range(args.days)]
    cuts[-1] = dates[-1]
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    for k, cut in enumerate(cuts, start=1):
        target = os.path.join(args.out, f"day{k}", "logs")
        os.makedirs(target)
        total = 0
        for chan in sorted({c for c, _d in logs}):
            with open(os.path.join(target, f"{chan}.log"), "wb") as out:
                for (c, d) in sorted(k2 for k2 in logs if k2[0] == chan and k2[1] <= cut):
                    for path in sorted(logs[(c, d)]):
                        with open(path, "rb") as f:
                            data = f.read()
                        out.write(data)
                        total += len(data)
        print(f"day{k}: logs up to {cut}, {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
