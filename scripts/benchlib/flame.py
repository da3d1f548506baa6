"""Summarise py-spy's collapsed stacks (``--format raw``): where the samples are, as text.

python -m scripts.benchlib.flame PROFILE.txt [--top 25] [--match robot/]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int, match: str) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{path.name}: {total} samples"]
    lines.append("  inclusive:")
    for frame, n in inclusive.most_common():
        if match in frame:
            lines.append(f"    {n / total:6.1%}  {frame}")
            if len(lines) > top + 2:
                break
    lines.append("  self:")
    for frame, n in own.most_common(top):
        lines.append(f"    {n / total:6.1%}  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    for path in args.paths:
        print(summarise(path, args.top, args.match))


if __name__ == "__main__":
    main()
