"""The Grand Challenge runtime without Docker: run the entrypoint in a Linux sandbox.

What the platform does to an algorithm container, done with namespaces (``unshare``) and
``setpriv``, so a submission's surprises show up on a laptop:

- no network: a fresh network namespace (only a loopback, down);
- a non-root user (uid/gid 65534), no capabilities, no new privileges;
- ``/input`` (here ``/mnt/input``), the model (``/mnt/model``) and the code read-only; the whole
  root file system read-only, so a write anywhere but the output folder, ``/tmp`` and
  ``/dev/shm`` fails; a fresh, empty ``/tmp``; ``HOME`` an unwritable folder;
- an audit hook (Python's ``sys.addaudithook``, through a ``sitecustomize``) that reports every
  internet socket the process opens and every program it starts, as ``SANDBOX-AUDIT`` lines.

What is acceptable (decided here, checked by the tests): no internet socket at all; programs
started: only ``hostname`` and ``lscpu`` (system probes on nnU-Net's path, through ``sh -c``)
and ``fc-list`` (matplotlib, which nnU-Net's trainer module imports, building its font cache in
the fresh ``/tmp``: the entrypoint points ``MPLCONFIGDIR`` there); writes to ``/tmp`` (that
cache, torch's compile cache), which the platform gives a fresh volume for.

Needs root (mount namespaces, then dropping to uid 65534) and ``unshare`` / ``setpriv``
(util-linux); :func:`sandbox_unavailable_reason` says why not where that is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

SANDBOX_UID = 65534
ALLOWED_PROGRAMS = ("lscpu", "hostname", "fc-list")
REPO = Path(__file__).resolve().parents[1]

_AUDIT_HOOK = '''
import json as _json
import socket as _socket
import sys as _sys

def _sandbox_audit(event, args):
    if event == "socket.__new__" and len(args) > 1 and args[1] in (_socket.AF_INET, _socket.AF_INET6):
        print(f"SANDBOX-AUDIT socket family={args[1]}", file=_sys.stderr, flush=True)
    elif event == "subprocess.Popen":
        argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1] if args[1] is not None else args[0]]
        print("SANDBOX-AUDIT exec " + _json.dumps([str(a) for a in argv]), file=_sys.stderr, flush=True)
    elif event in ("os.system", "os.exec", "os.posix_spawn"):
        print("SANDBOX-AUDIT exec " + _json.dumps([str(args[0])]), file=_sys.stderr, flush=True)

_sys.addaudithook(_sandbox_audit)
'''

# Runs as root inside fresh mount + network namespaces. Positional arguments: app dir, input,
# output, model ("-" for none), audit dir, interpreter prefix, the folder hiding it ("-"), the
# virtual environment ("-"), python (in-sandbox path), then the entrypoint's arguments.
OUTPUT_MOUNT = "/mnt/output"  # where the run's output folder is, seen from inside the sandbox
_SETUP = r'''
set -euo pipefail
app="$1" input="$2" output="$3" model="$4" audit="$5" prefix="$6" hidden="$7" venv="$8" python="$9"; shift 9
mount --make-rprivate /
mount -t tmpfs -o mode=755 autopet-sandbox /mnt
mkdir -p /mnt/app /mnt/input /mnt/output /mnt/model /mnt/audit /mnt/prefix /mnt/venv /mnt/home
bind() { mount --bind "$1" "$2"; if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi; }
bind "$app" /mnt/app ro
bind "$input" /mnt/input ro
bind "$output" /mnt/output
if [ "$model" != "-" ]; then bind "$model" /mnt/model ro; fi
bind "$audit" /mnt/audit ro
bind "$prefix" /mnt/prefix ro
if [ "$venv" != "-" ]; then bind "$venv" /mnt/venv ro; fi  # the virtual environment, wherever it is (/tmp too)
# The interpreter may live below a folder others cannot enter (/root/.pyenv): that folder is
# replaced by an empty one that holds only the interpreter.
if [ "$hidden" != "-" ]; then
    mount -t tmpfs -o mode=755 autopet-sandbox-prefix "$hidden"
    mkdir -p "$prefix"
    bind /mnt/prefix "$prefix" ro
fi
mount -t tmpfs -o mode=1777 autopet-sandbox-tmp /tmp
chmod 555 /mnt/home
mount -o remount,bind,ro /
cd /mnt/app
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
    env -i HOME=/mnt/home PATH=/usr/local/bin:/usr/bin:/bin TMPDIR=/tmp LANG=C.UTF-8 PYTHONPATH=/mnt/audit \
    PYTHONUNBUFFERED=1 ${AUTOPET_REQUIRE_MODEL:+AUTOPET_REQUIRE_MODEL=$AUTOPET_REQUIRE_MODEL} \
    "$python" inference.py --input /mnt/input --output /mnt/output "$@"
'''


def sandbox_unavailable_reason() -> str | None:
    """None when this machine can run the sandbox, else why not (printed by skipped tests)."""
    if sys.platform != "linux":
        return "the sandbox needs Linux namespaces"
    if os.geteuid() != 0:
        return "the sandbox needs root (mount namespaces, then it drops to uid 65534)"
    for tool in ("unshare", "setpriv", "bash", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--net", "--fork", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"namespaces are not allowed here: {probe.stderr.strip() or probe.returncode}"
    return None


def program_name(argv: Sequence[str]) -> str:
    """The program a command line runs (through ``sh -c``, the command's first word)."""
    import shlex

    name = Path(argv[0]).name if argv else ""
    if name in ("sh", "bash", "dash") and "-c" in argv[:-1]:
        words = shlex.split(argv[list(argv).index("-c") + 1])
        return Path(words[0]).name if words else name
    return name


@dataclass
class SandboxRun:
    exit_code: int
    log: str
    sockets: list[str] = field(default_factory=list)
    programs: list[str] = field(default_factory=list)

    @property
    def unexpected_programs(self) -> list[str]:
        return [p for p in self.programs if p not in ALLOWED_PROGRAMS]


def sandboxed_command(input_dir: Path, output_dir: Path, model_dir: Path | None, extra_args: Sequence[str] = (),
                      *, audit_dir: Path, app_dir: Path = REPO) -> list[str]:
    """The command that runs ``inference.py`` of ``app_dir`` in the sandbox on these folders."""
    prefix = Path(sys.base_prefix).resolve()
    venv = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
    # in a virtual environment: its python, seen at /mnt/venv inside (it may live under /tmp)
    python = Path("/mnt/venv") / Path(sys.executable).relative_to(venv) if venv else Path(sys.executable)
    args = list(extra_args)
    if model_dir is not None:
        args = ["--model", "/mnt/model", *args]
    hidden = next((p for p in reversed(prefix.parents) if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    return ["unshare", "--mount", "--net", "--fork", "--", "bash", "-c", _SETUP, "autopet-sandbox",
            str(app_dir), str(Path(input_dir).resolve()), str(Path(output_dir).resolve()),
            str(Path(model_dir).resolve()) if model_dir is not None else "-", str(audit_dir), str(prefix),
            str(hidden) if hidden is not None else "-", str(venv) if venv else "-", str(python), *args]


def write_audit_hook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_AUDIT_HOOK)
    os.chmod(folder, 0o755)
    os.chmod(folder / "sitecustomize.py", 0o644)
    return folder


def run_sandboxed(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *, model_dir=None,
                  extra_args: Sequence[str] = (), timeout: float | None = None) -> SandboxRun:
    """Run the entrypoint once in the sandbox; the output folder is made writable for uid 65534."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(output_dir, 0o777)  # as the platform's output volume: writable by the container's user
    with tempfile.TemporaryDirectory(prefix="autopet-sandbox-audit-") as audit:
        audit_dir = write_audit_hook(Path(audit))
        os.chmod(audit, 0o755)
        done = subprocess.run(sandboxed_command(Path(input_dir), output_dir, None if model_dir is None else Path(model_dir),
                                                extra_args, audit_dir=audit_dir),
                              capture_output=True, text=True, timeout=timeout)
    log = done.stdout + done.stderr
    sockets = [line.split(" ", 2)[2] for line in log.splitlines() if line.startswith("SANDBOX-AUDIT socket")]
    programs = [program_name(json.loads(line.split(" ", 2)[2])) for line in log.splitlines()
                if line.startswith("SANDBOX-AUDIT exec")]
    return SandboxRun(done.returncode, log, sockets, programs)
