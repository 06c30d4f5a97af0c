"""The benchmark's chart, from the tab-separated data `cargo xtask bench` writes.

usage: chart.py DATA.tsv OUT.png TITLE
"""
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(data_path, png_path, title):
    packets, growth = [], defaultdict(list)
    with open(data_path, encoding="utf-8") as data:
        for line in data:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "packet":
                packets.append((fields[1], fields[2], float(fields[3]), float(fields[4])))
            elif fields[0] == "growth":
                growth[fields[1]].append([int(fields[2])] + [float(f) for f in fields[3:7]])

    figure = plt.figure(figsize=(15, 11), dpi=110)
    grid = figure.add_gridspec(2, 2, width_ratios=[1.35, 1], hspace=0.6, wspace=0.55)
    bars = figure.add_subplot(grid[:, 0])
    classes = [c for c in dict.fromkeys(p[0] for p in packets) if not c.startswith("calibration")]
    by_key = {(p[0], p[1]): p for p in packets}
    height = 0.2
    for offset, (family, program, colour) in enumerate(
        [
            ("v4", "empty", "#bbbbbb"),
            ("v4", "knock", "#1f77b4"),
            ("v6", "empty", "#dddddd"),
            ("v6", "knock", "#ff7f0e"),
        ]
    ):
        ys, xs = [], []
        for i, cls in enumerate(classes):
            row = by_key.get((cls, family))
            if row is None:
                continue
            ys.append(i + (offset - 1.5) * height)
            xs.append(row[2] if program == "empty" else row[3])
        label = f"{'empty program' if program == 'empty' else 'knock'}, IP{family}"
        bars.barh(ys, xs, height=height, color=colour, label=label)
    bars.set_yticks(range(len(classes)))
    bars.set_yticklabels(classes, fontsize=8)
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_xlabel("ns per packet (log scale; single-run rows include the timer's own cost)")
    bars.set_title("Per-packet cost, BPF_PROG_TEST_RUN medians")
    bars.legend(fontsize=8, loc="lower right")
    bars.grid(axis="x", which="both", alpha=0.3)

    doors = figure.add_subplot(grid[0, 1])
    fills = figure.add_subplot(grid[1, 1])
    names = ["SYN unrelated", "SYN protected, dropped", "first knock", "knock step"]
    styles = {"own ports": "-", "shared first knock": "--"}
    for series, points in growth.items():
        points.sort()
        xs = [p[0] for p in points]
        axis = fills if series.startswith("progress") else doors
        style = next((s for k, s in styles.items() if k in series), "-")
        for column, name in enumerate(names, start=1):
            label = name if axis is fills else f"{name} ({series.split(', ')[-1]})"
            axis.plot(xs, [p[column] for p in points], style, marker="o", markersize=3,
                      label=label, color=f"C{column - 1}")
    doors.set_xscale("log", base=2)
    doors.set_xlabel("doors in the configuration")
    doors.set_ylabel("overhead over the empty program, ns")
    doors.set_title("Growth with the number of doors")
    doors.legend(fontsize=6.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    doors.grid(alpha=0.3)
    for axis in (doors, fills):
        axis.set_yscale("log")
    fills.set_xlabel("progress map occupancy, % of 16384")
    fills.set_ylabel("overhead over the empty program, ns")
    fills.set_title("Growth with the progress map's occupancy")
    fills.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fills.grid(alpha=0.3)

    figure.suptitle(f"knock: per-packet cost ({title})", fontsize=11)
    figure.savefig(png_path, bbox_inches="tight")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
