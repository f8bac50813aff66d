#!/usr/bin/env python3
"""Summarise py-spy collapsed stacks (runtime_bench.py --py-spy DIR).

Why: a flame graph needs a browser; this prints, for one phase, the frames that
hold most samples (inclusive, counted once per stack) and the leaf frames (where
the time is actually spent), so a missed target can be explained in a terminal.

usage: spy_top.py DIR/lifecycle.txt [--match runtime/] [-n 25]
"""
from __future__ import annotations

import argparse
import collections


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--match", default="", help="only frames whose text contains this")
    p.add_argument("-n", type=int, default=25)
    args = p.parse_args(argv)
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            for fr in set(frames):
                if args.match in fr:
                    inclusive[fr] += n
            leaf[frames[-1]] += n
    print(f"{total} samples")
    print("\ninclusive (share of all samples):")
    for fr, n in inclusive.most_common(args.n):
        print(f"  {100 * n / max(total, 1):5.1f}%  {fr}")
    print("\nleaf (self time):")
    for fr, n in leaf.most_common(args.n):
        print(f"  {100 * n / max(total, 1):5.1f}%  {fr}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
