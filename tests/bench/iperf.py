#!/usr/bin/env python3
"""iperf3 and 64-byte ping-pong through the real burrow binaries, on loopback.

    python3 tests/bench/iperf.py [--baseline REV] [--seconds 10] [--rounds 3] [--pings 5000]

Builds the default release binary (`cargo build --release -p burrow`, RUSTFLAGS cleared, as
`cargo install` or a packaged binary would build it) and the mio build (`--no-default-features
--features mio`, in its own target dir); with --baseline REV also that commit's default build,
in a temporary git worktree with its own target dir. Then, everything on 127.0.0.1:

- one `iperf3 -s`, one TCP echo server (this script, in a child process);
- socat with 256 KiB buffers (`-b 262144`, rcvbuf and sndbuf 262144) in front of each, and
  for ping-pong a second socat in front of that one: two relays in a row have the process hops
  of a tunnel (client, two forwarders, service) without its crypto, a floor for its latency;
- per build: `burrow server` and two daemons (`burrow daemon -c FILE`, the same as `expose` and
  `connect` but one daemon carries two services): the exposing daemon serves iperf3 and the
  echo server, the connecting daemon listens on local ports for both.

Each round runs `iperf3 -c` (one stream, client sends) once per path, paths interleaved, and
reads utime+stime (+ reaped children) of every forwarding process from /proc/PID/stat before and
after: MB/s and CPU-seconds per GiB moved, per process, then medians and ratios (tunnel/raw,
tunnel/socat, build/baseline). Then 64-byte round trips per path, split into the same number of
interleaved runs (machine load shifts between paths otherwise): p50/p99 over all of them.

Installs nothing; says what is missing. Every child is ended when the script exits (also on
Ctrl-C, SIGTERM or its own deadline), and each step has a timeout. Timing never gates CI:
.ci/run does not run this.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"
SOCAT_BUF = 262144  # socat's transfer block (-b) and both sockets' SO_RCVBUF/SO_SNDBUF
CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30

children = []  # every Popen this script started
worktrees = []  # temporary git worktrees to remove


class Deadline(Exception):
    pass


def log(msg=""):
    print(msg, flush=True)


def die(msg, code=1):
    print(f"iperf.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


# ---------------------------------------------------------------- children and cleanup


def spawn(argv, log_path=None, stdout=subprocess.DEVNULL):
    """Starts a child in a process group of its own (so socat's forked children end with it)."""
    err = open(log_path, "ab") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, start_new_session=True
    )
    if log_path:
        err.close()
    p.log_path = log_path
    p.argv = argv
    children.append(p)
    return p


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)


def cleanup():
    for p in reversed(children):
        try:
            stop(p)
        except Exception as e:  # keep ending the others
            print(f"iperf.py: could not stop pid {p.pid}: {e}", file=sys.stderr)
    children.clear()
    for wt in worktrees:
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "remove", "--force", wt],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    if worktrees:
        subprocess.run(["git", "-C", ROOT, "worktree", "prune"], timeout=60)
    worktrees.clear()


def on_signal(signum, _frame):
    if signum == signal.SIGALRM:
        raise Deadline()
    raise SystemExit(128 + signum)


def run(argv, timeout, **kw):
    """Runs a step to completion within `timeout` seconds; a failure ends the script."""
    try:
        return subprocess.run(argv, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        die(f"timed out after {timeout} s: {shlex.join(argv)}")


def wait_port(port, proc, what, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode} before listening on port {port}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{what} did not listen on port {port} within {timeout} s")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def read_lines(proc, ready, timeout, what):
    """Reads the child's stdout until `ready(lines)` holds; returns the list of lines, which a
    thread keeps appending to (and draining, so the child never blocks on a full pipe)."""
    lines = []
    done = threading.Event()

    def reader():
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if ready(lines):
                done.set()
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(timeout) or not ready(lines):
        tail = ""
        if proc.log_path and os.path.exists(proc.log_path):
            with open(proc.log_path, errors="replace") as f:
                tail = "".join(f.readlines()[-20:])
        die(f"{what} did not start within {timeout} s; stdout {lines}; stderr tail:\n{tail}")
    return lines


def has(*prefixes):
    return lambda lines: all(any(x.startswith(p) for x in lines) for p in prefixes)


# ---------------------------------------------------------------- CPU accounting


def proc_cpu(pid):
    """utime+stime+cutime+cstime of a process, in seconds (children count once reaped)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


# ---------------------------------------------------------------- helpers run as children


def echo_server():
    """A TCP echo server on a free loopback port; prints the port."""
    ls = socket.socket()
    ls.bind((HOST, 0))
    ls.listen(64)
    print(ls.getsockname()[1], flush=True)

    def serve(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def pingpong_client(port, n, warmup):
    """n round trips of 64 bytes (after `warmup` unmeasured ones); prints each in us (JSON)."""
    s = socket.create_connection((HOST, port), timeout=30)
    s.settimeout(None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"p" * 64
    buf = bytearray(64)
    view = memoryview(buf)
    clock = time.perf_counter_ns
    samples = []
    for i in range(warmup + n):
        t0 = clock()
        s.sendall(msg)
        got = 0
        while got < 64:
            k = s.recv_into(view[got:])
            if k == 0:
                sys.exit("connection closed during ping-pong")
            got += k
        t1 = clock()
        if i >= warmup:
            samples.append(t1 - t0)
    s.close()
    print(json.dumps([round(x / 1000, 2) for x in samples]))


def percentile(sorted_us, p):
    return sorted_us[min(len(sorted_us) - 1, int(p / 100 * len(sorted_us)))]


# ---------------------------------------------------------------- builds


def target_dir():
    out = run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        timeout=120,
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)["target_directory"]


def build_env():
    env = dict(os.environ)
    for k in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"):
        if env.pop(k, None):
            log(f"note: {k} is set in the environment; cleared for the builds")
    return env


def build(label, src, tdir, features, timeout, run_dir):
    argv = ["cargo", "build", "--release", "-p", "burrow", "--target-dir", tdir] + features
    log(f"build {label}: (cd {src} && {shlex.join(argv)})")
    t0 = time.monotonic()
    r = run(argv, timeout=timeout, cwd=src, env=build_env(), capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-4000:])
        die(f"build {label} failed")
    binary = os.path.join(run_dir, f"burrow-{label}")
    shutil.copy2(os.path.join(tdir, "release", "burrow"), binary)
    log(f"  done in {time.monotonic() - t0:.0f} s")
    return binary


def git(*args, timeout=60):
    r = run(["git", "-C", ROOT, *args], timeout=timeout, capture_output=True)
    if r.returncode != 0:
        die(f"git {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode().strip()


# ---------------------------------------------------------------- one tunnel


class Tunnel:
    """`burrow server` and two daemons from one binary; the exposing daemon serves iperf3 and
    the echo server, the connecting daemon listens on a local port for each."""

    def __init__(self, label, binary, run_dir, iperf_port, echo_port):
        self.label = label
        d = os.path.join(run_dir, label)
        os.makedirs(d, mode=0o700)
        token = os.urandom(24).hex()
        key = os.path.join(d, "server.key")
        r = run([binary, "keygen", "--out", key], timeout=30, capture_output=True)
        if r.returncode != 0:
            die(f"{label}: burrow keygen failed: {r.stderr.decode(errors='replace')}")
        # `--token` works on every build (e4bea00's server knows no --token-file); a random
        # throwaway token on loopback.
        self.server = spawn(
            [binary, "server", "--listen", f"{HOST}:0", "--key", key, "--token", token],
            log_path=os.path.join(d, "server.log"),
            stdout=subprocess.PIPE,
        )
        lines = read_lines(
            self.server, has("server public key: ", "listening on udp "), 15, f"{label} server"
        )
        pub = next(x for x in lines if x.startswith("server public key: ")).split(": ", 1)[1]
        addr = next(x for x in lines if x.startswith("listening on udp ")).rsplit(" ", 1)[1]
        common = ["--server", addr, "--server-key", pub, "--token", token, "--udp", f"{HOST}:0"]
        iperf_name, echo_name = f"/bench/{label}/iperf", f"/bench/{label}/echo"
        self.expose = self._daemon(
            binary,
            d,
            "expose",
            common,
            "".join(
                f'[[expose]]\nname = "{n}"\ntarget = "{HOST}:{p}"\n'
                for n, p in ((iperf_name, iperf_port), (echo_name, echo_port))
            ),
            has("daemon public key: "),
        )
        names = (iperf_name, echo_name)

        def listening(lines):
            return all(
                any(x.startswith("listening on ") and x.endswith(f" for {n}") for x in lines)
                for n in names
            )

        self.connect = self._daemon(
            binary,
            d,
            "connect",
            common,
            "".join(f'[[connect]]\nname = "{n}"\nlisten = "{HOST}:0"\n' for n in names),
            listening,
        )
        ports = {}
        for line in self.connect.lines:
            if line.startswith("listening on "):
                _, _, a, _, name = line.split(" ", 4)
                ports[name] = int(a.rsplit(":", 1)[1])
        self.iperf_port, self.echo_port = ports[iperf_name], ports[echo_name]

    def _daemon(self, binary, d, role, common, config, ready):
        state = os.path.join(d, role)
        os.makedirs(state, mode=0o700)
        cfg = os.path.join(d, f"{role}.toml")
        with open(cfg, "w") as f:
            f.write(config)
        p = spawn(
            [binary, "daemon", "-c", cfg, *common, "--state-dir", state],
            log_path=os.path.join(d, f"{role}.log"),
            stdout=subprocess.PIPE,
        )
        p.lines = read_lines(p, ready, 20, f"{self.label} {role} daemon")
        return p

    def procs(self):
        return {"expose": self.expose, "connect": self.connect, "server": self.server}


# ---------------------------------------------------------------- measurements


def iperf_round(port, seconds, procs):
    """One iperf3 -c run; returns MB/s, bytes, and CPU-seconds per GiB for each process."""
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds), "-J"]
    for attempt in range(3):
        before = {k: proc_cpu(p.pid) for k, p in procs.items()}
        m0 = machine_cpu()
        r = run(argv, timeout=seconds + 60, capture_output=True)
        time.sleep(0.2)  # let socat reap its forked children so cutime/cstime count them
        after = {k: proc_cpu(p.pid) for k, p in procs.items()}
        m1 = machine_cpu()
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = {"error": r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")}
        if "error" not in out and r.returncode == 0:
            break
        # "the server is busy running a test": the previous test is still being torn down
        time.sleep(2)
    else:
        die(f"{shlex.join(argv)} failed: {out.get('error')}")
    recv = out["end"]["sum_received"]
    nbytes = recv["bytes"]
    gib = nbytes / GIB
    res = {"MB/s": nbytes / recv["seconds"] / 1e6, "bytes": nbytes}
    for k in procs:
        res[k] = (after[k] - before[k]) / gib
    res["machine"] = (m1 - m0) / gib
    return res


def pingpong(port, n, warmup, script):
    argv = [sys.executable, script, "_pingpong", str(port), str(n), str(warmup)]
    r = run(argv, timeout=120 + n / 100, capture_output=True)
    if r.returncode != 0:
        die(f"ping-pong on port {port} failed: {r.stderr.decode(errors='replace')}")
    return json.loads(r.stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="REV", help="also build and run this commit")
    ap.add_argument("--seconds", type=int, default=10, help="iperf3 -t per round (10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, paths interleaved (3)")
    ap.add_argument("--pings", type=int, default=5000, help="64-byte round trips (5000)")
    ap.add_argument("--no-mio", action="store_true", help="skip the mio build")
    ap.add_argument(
        "--build-timeout", type=int, default=1800, help="seconds per cargo build (1800)"
    )
    ap.add_argument(
        "--deadline", type=int, default=5400, help="seconds for the whole run (5400)"
    )
    args = ap.parse_args()

    missing = []
    for tool, pkg in (("iperf3", "iperf3"), ("socat", "socat"), ("cargo", None), ("git", "git")):
        if shutil.which(tool) is None:
            missing.append((tool, pkg))
    if missing:
        for tool, pkg in missing:
            how = f"apt-get install -y {pkg}" if pkg else "install the Rust toolchain (rustup)"
            print(f"iperf.py: `{tool}` is not installed: {how}", file=sys.stderr)
        pkgs = " ".join(p for _, p in missing if p)
        if pkgs:
            print(f"(as root: apt-get install -y {pkgs})", file=sys.stderr)
        sys.exit(2)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, on_signal)
    signal.alarm(args.deadline)
    run_dir = tempfile.mkdtemp(prefix="burrow-iperf.")
    try:
        bench(args, run_dir)
    except Deadline:
        die(f"the whole run exceeded --deadline {args.deadline} s")
    finally:
        signal.alarm(0)
        cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)


def bench(args, run_dir):
    script = os.path.abspath(__file__)
    rel = os.path.relpath(script, os.getcwd())
    log(f"command: python3 {shlex.join([rel, *sys.argv[1:]])}")
    head = git("rev-parse", "--short=9", "HEAD")
    dirty = " (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    log(f"commit:  {head}{dirty} on {git('rev-parse', '--abbrev-ref', 'HEAD')}, {ROOT}")
    iperf_v = run(["iperf3", "--version"], 10, capture_output=True).stdout.decode().split("\n")[0]
    socat_v = run(["socat", "-V"], 10, capture_output=True).stdout.decode().split("\n")[1]
    log(
        f"machine: {os.cpu_count()} CPUs, Linux {os.uname().release}; {iperf_v.strip()}; "
        f"{socat_v.strip()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    log()

    # ---- builds
    tdir = target_dir()
    builds = [("default", build("default", ROOT, tdir, [], args.build_timeout, run_dir))]
    if not args.no_mio:
        mio = build(
            "mio",
            ROOT,
            os.path.join(tdir, "bench-mio"),
            ["--no-default-features", "--features", "mio"],
            args.build_timeout,
            run_dir,
        )
        builds.append(("mio", mio))
    base_label = None
    if args.baseline:
        sha = git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")
        base_label = f"base-{sha[:7]}"
        wt = os.path.join(run_dir, "baseline-src")
        git("worktree", "add", "--detach", wt, sha, timeout=300)
        worktrees.append(wt)
        base = build(
            base_label,
            wt,
            os.path.join(tdir, "bench-baseline"),
            [],
            args.build_timeout,
            run_dir,
        )
        builds.append((base_label, base))
    log()

    # ---- services
    iperf_port = free_port()
    iperf_srv = spawn(
        ["iperf3", "-s", "-B", HOST, "-p", str(iperf_port)],
        log_path=os.path.join(run_dir, "iperf3-s.log"),
    )
    wait_port(iperf_port, iperf_srv, "iperf3 -s")
    echo = spawn([sys.executable, script, "_echo"], stdout=subprocess.PIPE)
    echo_port = int(read_lines(echo, has(""), 10, "echo server")[0])

    def socat(to_port):
        port = free_port()
        opts = f"rcvbuf={SOCAT_BUF},sndbuf={SOCAT_BUF}"
        p = spawn(
            [
                "socat",
                "-b",
                str(SOCAT_BUF),
                f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork,{opts}",
                f"TCP:{HOST}:{to_port},{opts}",
            ],
            log_path=os.path.join(run_dir, f"socat-{to_port}.log"),
        )
        wait_port(port, p, "socat")
        return p, port

    socat_iperf, socat_iperf_port = socat(iperf_port)
    socat_echo, socat_echo_port = socat(echo_port)
    # Two relays in a row: the process hops a tunnel has (client, connecting daemon, exposing
    # daemon, service), with no crypto and no UDP: the floor for a tunnel's ping-pong.
    socat_echo2, socat_echo2_port = socat(socat_echo_port)
    log(f"socat: {shlex.join(socat_iperf.argv)}")

    tunnels = []
    for label, binary in builds:
        tunnels.append(Tunnel(label, binary, run_dir, iperf_port, echo_port))
        log(f"tunnel {label}: {binary} (server + expose + connect daemons up)")

    # Paths for iperf3: (name, port, processes whose CPU is counted).
    paths = [("raw TCP", iperf_port, {}), ("socat 256K", socat_iperf_port, {"socat": socat_iperf})]
    for t in tunnels:
        paths.append((f"burrow {t.label}", t.iperf_port, t.procs()))

    # ---- warm-up: first connection through each tunnel (lookup, punch), unmeasured
    for t in tunnels:
        pingpong(t.echo_port, 50, 0, script)
        iperf_round(t.iperf_port, 1, {})
    log()

    # ---- iperf3 rounds
    log(
        f"== iperf3 -c, one stream, {args.seconds} s, {args.rounds} rounds, paths interleaved; "
        "CPU-s/GiB = CPU-seconds (utime+stime, /proc/PID/stat) per GiB received"
    )
    log(
        "   machine = busy time of all CPUs (/proc/stat): iperf3 and any other load included\n"
        "   expose = daemon in front of iperf3 -s (opens), connect = daemon iperf3 -c "
        "sends into (seals);"
    )
    results = {name: [] for name, _, _ in paths}
    cols = ["MB/s", "expose", "connect", "server", "socat", "machine"]
    header = f"{'round':<6}{'path':<22}" + "".join(f"{c:>10}" for c in cols)
    log(header)
    for rnd in range(1, args.rounds + 1):
        for name, port, procs in paths:
            res = iperf_round(port, args.seconds, procs)
            results[name].append(res)
            row = [res.get(c) for c in cols]
            log(
                f"{rnd:<6}{name:<22}"
                + "".join(
                    f"{fmt(v, 0 if c == 'MB/s' else 2):>10}" for c, v in zip(cols, row)
                )
            )
    log()
    medians = {}
    log("== medians over rounds (MB/s; CPU-s/GiB per process)")
    log(f"{'path':<28}" + "".join(f"{c:>10}" for c in cols))
    for name, _, _ in paths:
        rs = results[name]
        m = {c: (med([r[c] for r in rs]) if c in rs[0] else None) for c in cols}
        medians[name] = m
        log(
            f"{name:<28}"
            + "".join(f"{fmt(m[c], 0 if c == 'MB/s' else 2):>10}" for c in cols)
        )
    log()

    # ---- ping-pong
    chunk = max(1, args.pings // args.rounds)
    log(
        f"== 64-byte ping-pong, {chunk * args.rounds} round trips per path in {args.rounds} "
        "interleaved runs (200 warm-up each), python3 client and echo server"
    )
    pp_paths = [
        ("raw TCP", echo_port),
        ("socat 256K", socat_echo_port),
        ("two socats in a row", socat_echo2_port),
    ]
    pp_paths += [(f"burrow {t.label}", t.echo_port) for t in tunnels]
    samples = {name: [] for name, _ in pp_paths}
    for _ in range(args.rounds):
        for name, port in pp_paths:
            samples[name] += pingpong(port, chunk, 200, script)
    pp = {}
    log(f"{'path':<28}{'p50 us':>10}{'p99 us':>10}")
    for name, _ in pp_paths:
        xs = sorted(samples[name])
        pp[name] = {"p50": percentile(xs, 50), "p99": percentile(xs, 99)}
        log(f"{name:<28}{pp[name]['p50']:>10.0f}{pp[name]['p99']:>10.0f}")
    log()

    # ---- ratios
    raw, soc = medians["raw TCP"], medians["socat 256K"]
    log("== ratios (medians)")
    log(
        f"{'tunnel':<22}{'MB/s /raw':>10}{'/socat':>9}{'CPU expose/socat':>18}"
        f"{'connect/socat':>15}{'p50 /raw':>10}"
    )
    for t in tunnels:
        name = f"burrow {t.label}"
        m = medians[name]
        log(
            f"{name:<22}{m['MB/s'] / raw['MB/s']:>10.3f}{m['MB/s'] / soc['MB/s']:>9.3f}"
            f"{m['expose'] / soc['socat']:>18.2f}{m['connect'] / soc['socat']:>15.2f}"
            f"{pp[name]['p50'] / pp['raw TCP']['p50']:>10.2f}"
        )
    if base_label:
        b = medians[f"burrow {base_label}"]
        bp = pp[f"burrow {base_label}"]
        log()
        log(f"== against the baseline {args.baseline} ({base_label}), same run")
        log(
            f"{'build':<22}{'MB/s x':>10}{'expose CPU x':>14}{'connect CPU x':>15}"
            f"{'p50 x':>8}{'p99 x':>8}"
        )
        for t in tunnels:
            if t.label == base_label:
                continue
            name = f"burrow {t.label}"
            m = medians[name]
            log(
                f"{name:<22}{m['MB/s'] / b['MB/s']:>10.2f}{m['expose'] / b['expose']:>14.2f}"
                f"{m['connect'] / b['connect']:>15.2f}{pp[name]['p50'] / bp['p50']:>8.2f}"
                f"{pp[name]['p99'] / bp['p99']:>8.2f}"
            )
        log()
        log("== issue 15 goals (default build): >= 3x baseline MB/s, <= 3 CPU-s/GiB per daemon, "
            "p50 <= 3x raw TCP")
        m = medians["burrow default"]
        checks = [
            (f"MB/s {m['MB/s'] / b['MB/s']:.2f}x baseline", m["MB/s"] >= 3 * b["MB/s"]),
            (
                f"CPU-s/GiB expose {m['expose']:.2f}, connect {m['connect']:.2f}",
                max(m["expose"], m["connect"]) <= 3,
            ),
            (
                f"p50 {pp['burrow default']['p50'] / pp['raw TCP']['p50']:.2f}x raw",
                pp["burrow default"]["p50"] <= 3 * pp["raw TCP"]["p50"],
            ),
        ]
        for what, ok in checks:
            log(f"  {'met    ' if ok else 'NOT met'}  {what}")
        floor = pp["two socats in a row"]["p50"]
        log(
            f"  (two socats in a row, the same process hops without crypto: p50 "
            f"{floor / pp['raw TCP']['p50']:.2f}x raw; the tunnel is "
            f"{pp['burrow default']['p50'] / floor:.2f}x that)"
        )
    log()
    log(f"command: python3 {shlex.join([rel, *sys.argv[1:]])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_echo":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        echo_server()
    elif len(sys.argv) > 1 and sys.argv[1] == "_pingpong":
        pingpong_client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
