"""Two emulated hosts on this machine: network namespaces joined by a veth pair, with optional packet loss.

    with TwoHosts("hpe123") as hosts:          # namespaces hpe123a (10.77.0.1) and hpe123b (10.77.0.2)
        hosts.drop_incoming(0.02)               # iptables `statistic` rule on both veth ends
        proc = subprocess.Popen(hosts.wrap("a", ["python", ...]))

Each namespace gets `lo` and its veth end up, multicast on both, and a 224.0.0.0/4 route over the veth (what a
host's default route gives) so a multicast sender that names no interface reaches the other side.
Each side also gets its own /dev/shm and /etc/machine-id (bind-mounted over the real ones in every process
started with `wrap`), as real hosts have: namespaces share the machine's, and Fast DDS names its shared-memory
ports after UDP port numbers, which repeat in every namespace, so the sides could write into each other's ports.
Needs root and `ip netns` (`unavailable_reason()`), and iptables for loss (`iptables_reason()`). Closing kills
whatever still runs inside the namespaces and deletes them and those files, also after a failed set-up.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid

SUBNET = "10.77.0"


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


def unavailable_reason() -> str:
    """Why two namespaces cannot be made here ('' when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the test as root, as CI does)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"hpeprobe{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return ""


def iptables_reason() -> str:
    """Why packet loss cannot be injected ('' when it can); installs Debian's iptables when it is missing."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "iptables"]
    for attempt in ([install], [["apt-get", "update", "-qq"], install]):  # the second with fresh package lists
        if shutil.which("iptables") is not None or shutil.which("apt-get") is None:
            break
        try:
            for cmd in attempt:
                subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        except subprocess.TimeoutExpired:
            break  # no package mirror in reach
    if shutil.which("iptables") is None:
        return "iptables is not installed and `apt-get install iptables` did not install it"
    return ""


class TwoHosts:
    """Namespaces `<prefix>a` / `<prefix>b`, addresses 10.77.0.1 / 10.77.0.2 on veth `<prefix>a0` / `<prefix>b0`."""

    def __init__(self, prefix: str):
        self.names = {"a": f"{prefix}a", "b": f"{prefix}b"}
        self.links = {"a": f"{prefix}a0", "b": f"{prefix}b0"}
        self.addresses = {"a": f"{SUBNET}.1", "b": f"{SUBNET}.2"}
        self.shm = {side: f"/dev/shm/{ns}.shm" for side, ns in self.names.items()}
        self.machine_ids = {side: f"/dev/shm/{ns}.machine-id" for side, ns in self.names.items()}
        if any(len(n) > 15 for n in self.links.values()):
            raise ValueError(f"prefix {prefix!r} is too long for an interface name (15 characters at most)")

    def __enter__(self) -> TwoHosts:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        a, b = self.names["a"], self.names["b"]
        _run("ip", "netns", "add", a)
        _run("ip", "netns", "add", b)
        for side in self.names:
            os.makedirs(self.shm[side])
            with open(self.machine_ids[side], "w") as f:
                f.write(uuid.uuid4().hex + "\n")
        _run("ip", "link", "add", self.links["a"], "netns", a, "type", "veth", "peer", "name", self.links["b"],
             "netns", b)
        for side in self.names:
            link = self.links[side]
            self.exec(side, "ip", "addr", "add", f"{self.addresses[side]}/24", "dev", link)
            self.exec(side, "ip", "link", "set", "lo", "multicast", "on", "up")
            self.exec(side, "ip", "link", "set", link, "multicast", "on", "up")
            self.exec(side, "ip", "route", "add", "224.0.0.0/4", "dev", link)

    def exec(self, side: str, *cmd: str) -> subprocess.CompletedProcess:
        """Run a short command inside namespace `side` ('a' or 'b'); RuntimeError with its stderr on failure."""
        try:
            return _run(*self.wrap(side, list(cmd)))
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{' '.join(cmd)} in {self.names[side]}: {exc.stderr.strip()}") from exc

    def wrap(self, side: str, cmd: list[str]) -> list[str]:
        """`cmd` as run inside namespace `side` with that side's /dev/shm and machine id, for subprocess.Popen
        (same pid). `ip netns exec` gives each command a mount namespace of its own: the mounts stay inside it."""
        mounts = 'mount --bind "$1" /etc/machine-id && mount --bind "$2" /dev/shm && shift 2 && exec "$@"'
        return ["ip", "netns", "exec", self.names[side], "sh", "-c", mounts, "sh", self.machine_ids[side],
                self.shm[side], *cmd]

    def drop_incoming(self, probability: float) -> None:
        """Drop each packet arriving over the veth, in both directions, with this probability.

        Only the link loses packets: traffic between processes of one namespace (loopback) stays intact,
        as between the processes of one real host.
        """
        for side in self.names:
            self.exec(side, "iptables", "-A", "INPUT", "-i", self.links[side], "-m", "statistic", "--mode", "random",
                      "--probability", f"{probability}", "-j", "DROP")

    def link_counters(self, side: str) -> dict[str, int]:
        """rx/tx packets and bytes of `side`'s veth end."""
        stats = "/sys/class/net/{}/statistics/{}"
        out = self.exec(side, "cat", *(stats.format(self.links[side], k)
                                       for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")))
        return dict(zip(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"), map(int, out.stdout.split())))

    def close(self) -> None:
        """Kill every process left in the namespaces, delete them (and so the veth pair) and the side's files."""
        for ns in self.names.values():
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", ns, check=False)
        for side in self.names:
            shutil.rmtree(self.shm[side], ignore_errors=True)
            if os.path.exists(self.machine_ids[side]):
                os.remove(self.machine_ids[side])
