#!/usr/bin/python3
"""Runs aeanomaly on a source and prints its bus messages as JSON Lines.

  read_anomaly_messages.py [--model MODEL] [--roi X,Y,W,H] [--interval N]
                           [--learn-frames N] [--display] SOURCE
  read_anomaly_messages.py --pipeline "DESCRIPTION WITH AN aeanomaly ELEMENT"
  read_anomaly_messages.py --self-test

SOURCE is a video or image file, a URI, a camera /dev/videoN or a gst-launch
description starting with videotestsrc. One JSON object per line:

  {"event": "frame", "frame": 12, "timestamp": 400000000, "score": 0.0021,
   "threshold": 0.0017, "anomalous": true,
   "regions": [{"x": 40, "y": 8, "w": 9, "h": 7, "score": 0.031, "area": 52}]}
  {"event": "begin", "frame": 12, "timestamp": 400000000, "score": 0.0021}
  {"event": "end", "frame": 15, "timestamp": 500000000, "begin-frame": 12,
   "peak-score": 0.004, "eos": false}
  {"event": "learned", "threshold": 0.0017, "frames": 100, ...}

Timestamps are nanoseconds (null when unknown). Ctrl-C ends the stream
cleanly. Needs Debian's python3-gi and gir1.2-gstreamer-1.0.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
CLOCK_TIME_NONE = 2**64 - 1


def setup_environment():
    """Finds the plugin in the build tree when it is not installed; under
    meson the system plugin path may be empty (unit tests), but sources and
    sinks live there. A sanitised plugin needs its runtime preloaded, which
    takes a fresh process."""
    if os.environ.get("GST_PLUGIN_SYSTEM_PATH_1_0") == "":
        del os.environ["GST_PLUGIN_SYSTEM_PATH_1_0"]
    # AE_BUILD_DIR wins; the build tree next to this script only serves
    # when nothing else says where the plugin is.
    build = os.environ.get("AE_BUILD_DIR")
    if not build and not os.environ.get("GST_PLUGIN_PATH"):
        build = os.path.join(HERE, "..", "build")
    plugins = os.path.join(build or "", "plugins")
    if build and os.path.isdir(plugins):
        path = os.environ.get("GST_PLUGIN_PATH")
        os.environ["GST_PLUGIN_PATH"] = plugins + (":" + path if path else "")
    dirs = os.environ.get("GST_PLUGIN_PATH", "").split(":")
    found = [os.path.join(d, "libgstautoencoder.so") for d in dirs if d]
    so = next((f for f in found if os.path.exists(f)), None)
    if so and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        ldd = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
        if "libasan" in ldd:
            libs = [subprocess.run(["gcc", "-print-file-name=" + lib], capture_output=True,
                                   text=True).stdout.strip() for lib in ("libasan.so", "libubsan.so")]
            os.environ["LD_PRELOAD"] = " ".join(libs)
            os.environ["ASAN_OPTIONS"] = "detect_leaks=0"
            os.execv(sys.executable, [sys.executable] + sys.argv)


setup_environment()

import gi  # noqa: E402

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

# Structures inside a GstValueArray are reachable only through the
# deprecated GValueArray accessors of python3-gi.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_description(source):
    if source.startswith("/dev/video"):
        return "v4l2src device=%s ! videoconvert" % quote(source)
    if source.startswith("videotestsrc"):
        return source
    if "://" in source:
        return "uridecodebin uri=%s ! videoconvert" % quote(source)
    if not os.path.exists(source):
        sys.exit("read_anomaly_messages.py: no such file: %s" % source)
    return "filesrc location=%s ! decodebin ! videoconvert" % quote(source)


def time_or_none(value):
    return None if value is None or value == CLOCK_TIME_NONE else value


def regions(structure):
    ok, array = structure.get_array("regions")
    out = []
    for i in range(array.n_values if ok and array else 0):
        r = array.get_nth(i)
        out.append({k: r.get_value(k) for k in ("x", "y", "w", "h", "score", "area")})
    return out


def to_record(structure):
    """The JSON record of an aeanomaly message, or None for other messages."""
    name = structure.get_name()
    get = structure.get_value
    if name == "aeanomaly":
        return {"event": "frame", "frame": get("frame"), "timestamp": time_or_none(get("timestamp")),
                "score": get("score"), "threshold": get("threshold"),
                "anomalous": get("anomalous"), "regions": regions(structure)}
    if name == "aeanomaly-begin":
        return {"event": "begin", "frame": get("frame"),
                "timestamp": time_or_none(get("timestamp")), "score": get("score")}
    if name == "aeanomaly-end":
        return {"event": "end", "frame": get("frame"), "timestamp": time_or_none(get("timestamp")),
                "begin-frame": get("begin-frame"), "peak-score": get("peak-score"),
                "eos": get("eos")}
    if name == "aeanomaly-learned":
        return {"event": "learned", **{k: get(k) for k in ("threshold", "frames", "epochs",
                                                            "seconds", "location")}}
    return None


def run(description, on_record, stop_when=None, timeout_s=None):
    """Plays the pipeline until EOS, error, Ctrl-C, stop_when(record) or the
    timeout. Returns 0 on a clean end, 1 on an error."""
    pipeline = Gst.parse_launch(description)
    bus = pipeline.get_bus()
    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    pipeline.set_state(Gst.State.PLAYING)
    start = Gst.util_get_timestamp()
    status, eos_sent = 0, False
    types = Gst.MessageType.ELEMENT | Gst.MessageType.ERROR | Gst.MessageType.EOS
    while True:
        msg = bus.timed_pop_filtered(100 * Gst.MSECOND, types)
        late = timeout_s and Gst.util_get_timestamp() - start > timeout_s * Gst.SECOND
        if (interrupted or late) and not eos_sent:
            pipeline.send_event(Gst.Event.new_eos())
            eos_sent = True
            status = 1 if late else 0
        if msg is None:
            continue
        if msg.type == Gst.MessageType.EOS:
            break
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print("read_anomaly_messages.py: %s (%s)" % (err.message, debug), file=sys.stderr)
            status = 1
            break
        record = to_record(msg.get_structure())
        if record:
            on_record(record)
            if stop_when and stop_when(record) and not eos_sent:
                pipeline.send_event(Gst.Event.new_eos())
                eos_sent = True
    pipeline.set_state(Gst.State.NULL)
    return status


def print_record(record):
    print(json.dumps(record), flush=True)


def self_test():
    """Online learning on a live test pattern: learned, then frame messages
    whose fields all convert, within two minutes."""
    records = []

    def keep(record):
        print_record(record)
        records.append(record)

    def enough(_):
        learned = any(r["event"] == "learned" for r in records)
        return learned and sum(r["event"] == "frame" for r in records) >= 10

    desc = ("videotestsrc is-live=true pattern=ball num-buffers=3600 ! "
            "video/x-raw,format=GRAY8,width=32,height=32,framerate=30/1 ! "
            "aeanomaly learn-frames=10 learn-epochs=2 ! fakesink")  # quick: messages, not quality
    status = run(desc, keep, enough, timeout_s=120)
    frames = [r for r in records if r["event"] == "frame"]
    ok = (status == 0 and enough(None)
          and all(isinstance(r["score"], float) and isinstance(r["anomalous"], bool)
                  and isinstance(r["timestamp"], int) and isinstance(r["regions"], list)
                  for r in frames)
          and all(set(g) == {"x", "y", "w", "h", "score", "area"}
                  for r in frames for g in r["regions"]))
    print("read_anomaly_messages.py self-test: %s (%d frame messages, %d regions)"
          % ("ok" if ok else "FAILED", len(frames), sum(len(r["regions"]) for r in frames)),
          file=sys.stderr)
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(
        description="Print aeanomaly's bus messages as JSON Lines.")
    parser.add_argument("source", nargs="?", help="file, URI, /dev/videoN or videotestsrc ...")
    parser.add_argument("--pipeline", help="a full description with an aeanomaly element")
    parser.add_argument("--model", help="anomaly model (default: learn online)")
    parser.add_argument("--roi", help="x,y,w,h")
    parser.add_argument("--interval", type=int, help="analyse every Nth frame")
    parser.add_argument("--learn-frames", type=int, help="frames to learn from without a model")
    parser.add_argument("--display", action="store_true", help="show the overlay")
    parser.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    Gst.init(None)
    if Gst.ElementFactory.find("aeanomaly") is None:
        sys.exit("read_anomaly_messages.py: the aeanomaly element is not available "
                 "(build the project or set GST_PLUGIN_PATH)")
    if args.self_test:
        return self_test()
    if bool(args.source) == bool(args.pipeline):
        parser.error("give a SOURCE or --pipeline")
    if args.pipeline:
        return run(args.pipeline, print_record)
    props = []
    for name, value in (("model", args.model), ("roi", args.roi), ("interval", args.interval),
                        ("learn-frames", args.learn_frames)):
        if value is not None:
            props.append("%s=%s" % (name, quote(str(value))))
    if args.display:
        props.append("output=overlay")
        sink = "videoconvert ! autovideosink"
    else:
        sink = "fakesink sync=false"
    desc = "%s ! aeanomaly %s ! %s" % (source_description(args.source), " ".join(props), sink)
    return run(desc, print_record)


if __name__ == "__main__":
    sys.exit(main())
