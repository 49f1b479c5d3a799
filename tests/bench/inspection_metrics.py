#!/usr/bin/python3
"""Scores aeanomaly's output on labelled inspection footage.

Reads the element's JSON Lines (events-location: per-frame score and its own
`anomalous` decision) and its float32 anomaly maps (map-location) — the last
records when the stream carried other frames first — and the
generator's labels and masks (tests/bench/inspection_video.py). Prints one
line of KEY=VALUE: frame AUROC, pixel AUROC (over every pixel of every test
frame, as MVTec AD counts it), and precision, recall and F1 of `anomalous`.

Usage: inspection_metrics.py SURFACE_DIR EVENTS.jsonl MAPS.f32 [LABEL]
"""
import json
import os
import sys

import numpy as np


def auroc(scores, labels):
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    pos = int(labels.sum())
    neg = labels.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, inverse, counts = np.unique(scores[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = np.empty(scores.size)
    ranks[order] = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def read_info(surface_dir):
    info = {}
    for line in open(os.path.join(surface_dir, "info.txt")):
        key, value = line.strip().split("=", 1)
        info[key] = int(value)
    return info


def read_labels(surface_dir):
    rows = open(os.path.join(surface_dir, "test-labels.csv")).read().split("\n")[1:]
    rows = [r.split(",") for r in rows if r]
    return np.array([int(r[1]) for r in rows], bool), [r[2] for r in rows]


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    surface_dir, events_path, maps_path = argv[1:4]
    tag = argv[4] if len(argv) == 5 else os.path.basename(os.path.normpath(surface_dir))
    info = read_info(surface_dir)
    w, h, n = info["width"], info["height"], info["test"]
    labels, kinds = read_labels(surface_dir)
    # The last n records: a stream may carry the test footage after other
    # frames (online learning), as long as it ends with it, every frame analysed.
    events = [json.loads(line) for line in open(events_path)]
    skip = len(events) - n
    if skip < 0:
        sys.exit(f"{events_path}: {len(events)} records for {n} test frames")
    events = events[skip:]
    first = events[0]["frame"]
    if [e["frame"] for e in events] != list(range(first, first + n)):
        sys.exit(f"{events_path}: the last {n} records are not consecutive frames")
    scores = np.array([e["score"] for e in events], np.float64)
    flagged = np.array([e["anomalous"] for e in events], bool)
    maps = np.fromfile(maps_path, np.float32)
    if maps.size != (skip + n) * w * h:
        sys.exit(f"{maps_path}: {maps.size} floats, expected {skip + n} maps of {w}x{h}")
    maps = maps[skip * w * h:]
    masks = np.fromfile(os.path.join(surface_dir, "test-masks.gray8"), np.uint8) > 0

    tp = int((flagged & labels).sum())
    fp = int((flagged & ~labels).sum())
    fn = int((~flagged & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_kind = []
    for kind in sorted(set(kinds) - {"none"}):
        mine = np.array([k in (kind, "none") for k in kinds])
        caught = np.array([k == kind for k in kinds]) & flagged
        per_kind.append(f"auroc_{kind}={auroc(scores[mine], labels[mine]):.4f} "
                        f"recall_{kind}={caught.sum() / max(kinds.count(kind), 1):.2f}")
    print(f"{tag}: frame_auroc={auroc(scores, labels):.4f} pixel_auroc={auroc(maps, masks):.4f} "
          f"precision={precision:.4f} recall={recall:.4f} f1={f1:.4f} "
          f"threshold={events[0]['threshold']:.6g} tp={tp} fp={fp} fn={fn} "
          + " ".join(per_kind))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
