"""The floor: the smallest ContainerPilot-like loop in 20 lines (child, signals, one watch)."""

# ruff: noqa: E401, I001 - one import line keeps the loop at 20 lines
import os, signal, subprocess, sys, time, urllib.request

addr, prefix, *command = sys.argv[1:]
child = subprocess.Popen(command)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, lambda number, _frame: child.send_signal(number))
index = "0"
while child.poll() is None:
    url = f"http://{addr}/v1/kv/{prefix}?recurse&index={index}&wait=300s"
    try:
        with urllib.request.urlopen(url, timeout=320) as answer:
            new = answer.headers["X-Consul-Index"]
    except OSError:
        time.sleep(1)
        continue
    if index != "0" and new != index:
        os.kill(child.pid, signal.SIGHUP)
    index = new
sys.exit(child.returncode)
