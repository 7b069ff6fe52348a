#!/usr/bin/env python3
"""Stall probe: sleeps 0.5 ms in a loop for N seconds and reports the wake-ups that came more
than 5 ms late. Run two at once: gaps that both see at the same moments are stalls of the whole
machine (hypervisor or kernel), which no server running on it can hide from its p99.

usage: scripts/bench-fixtures/stall-probe.py SECONDS
"""
import sys
import time

duration = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
end = time.monotonic() + duration
gaps = []
last = time.monotonic()
wakeups = 0
while True:
    time.sleep(0.0005)
    now = time.monotonic()
    if now - last > 0.005:
        gaps.append(round((now - last) * 1000, 1))
    last = now
    wakeups += 1
    if now > end:
        break
print(f"{wakeups} wake-ups in {duration:g} s; {len(gaps)} came > 5 ms late; "
      f"worst (ms): {sorted(gaps)[-10:]}")
