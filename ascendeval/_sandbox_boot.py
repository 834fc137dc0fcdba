"""Stage 1 of the sandbox, run as a separate interpreter (`python -I -S _sandbox_boot.py CONF -- CMD...`).

It runs inside the new namespaces (when `unshare` was available) BEFORE the untrusted code:
1. make every mount read-only except the item's own temporary directory (needs a mount namespace),
2. set the resource limits,
3. drop to an unprivileged uid when started as root (RLIMIT_NPROC does not apply to root),
4. exec the untrusted command.
It imports only the standard library and never imports ascendeval (it is run by path).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_FLAG = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
         "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
EXIT_SETUP_FAILED = 97


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 4 <= len(path) and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, int]]:
    result = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            mnt, opts = _unescape(parts[4]), parts[5].split(",")
            # locked per-mount flags must be kept on remount inside a user namespace (else EPERM)
            flags = 0
            for o in opts:
                flags |= _FLAG.get(o, 0)
            result.append((mnt, flags))
    return result


def make_read_only(rw_dir: str) -> list[str]:
    """Bind `rw_dir` onto itself (so it stays writable), then remount every other mount read-only.

    Returns the mount points that could not be made read-only (reported, never silently ignored).
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    rw = rw_dir.encode()
    if libc.mount(rw, rw, None, MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind {rw_dir}")
    failed = []
    for mnt, flags in _mounts():
        if mnt == rw_dir or mnt.startswith(rw_dir.rstrip("/") + "/"):
            continue
        if mnt == "/proc" or mnt.startswith("/proc/"):
            continue  # the fresh /proc of the pid namespace; files there are not the host's data
        m = mnt.encode()
        if libc.mount(None, m, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None) != 0:
            failed.append(f"{mnt} ({os.strerror(ctypes.get_errno())})")
    return failed


def main() -> None:
    conf = json.loads(sys.argv[1])
    sep = sys.argv.index("--")
    cmd = sys.argv[sep + 1:]
    try:
        if conf.get("read_only"):
            failed = make_read_only(conf["rw_dir"])
            if failed:
                # A mount left writable breaks the containment we claim: refuse to run the item.
                print("ascendeval-sandbox: could not make read-only: " + ", ".join(failed), file=sys.stderr)
                sys.exit(EXIT_SETUP_FAILED)
        for name, value in conf.get("rlimits", {}).items():
            lim = getattr(resource, name)
            resource.setrlimit(lim, (value, value))
        if conf.get("uid") is not None:
            os.setgroups([])
            os.setgid(conf["gid"])
            os.setuid(conf["uid"])
        os.chdir(conf["rw_dir"])
    except OSError as exc:
        print(f"ascendeval-sandbox: setup failed: {exc}", file=sys.stderr)
        sys.exit(EXIT_SETUP_FAILED)
    os.execve(cmd[0], cmd, conf["env"])


if __name__ == "__main__":
    main()
