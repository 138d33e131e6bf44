"""The packages of `make dist` (docs/packages.md), each on a clean slate:

* the wheel in a fresh venv whose PATH has no cargo or rustc: it installs,
  reads a bus from a producer, and runs the OpenCV example;
* the sdist holds the sources a build needs;
* the .deb: lintian finds no error, and in a throwaway root (an overlay of
  / in private mount, PID and network namespaces: deb_in_throwaway_root.sh)
  `apt-get install ./framebus_….deb` creates the user, `systemd-analyze
  verify` accepts the unit, and the installed producer started with the
  installed config serves the console, RTSP and its bus.

Run by `make test-dist` (after `make dist`) with the dev venv's pytest.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from typing import Dict, Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST = os.environ.get("FRAMEBUS_DIST", os.path.join(ROOT, "dist"))
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")


def one(pattern: str) -> str:
    found = glob.glob(os.path.join(DIST, pattern))
    assert len(found) == 1, f"{pattern} in {DIST}: {found} (run `make dist`)"
    return found[0]


def run(cmd: List[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def without_rust(env: Dict[str, str]) -> Dict[str, str]:
    """`env` with every PATH entry holding cargo or rustc removed."""
    dirs = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, t)) for t in ("cargo", "rustc"))]
    out = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "CARGO_HOME", "RUSTUP_HOME",
                                                     "PYTHONPATH", "CARGO_TARGET_DIR")}
    out["PATH"] = os.pathsep.join(dirs)
    return out


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="framebus-dist-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_wheel_installs_and_reads_a_bus_without_a_rust_toolchain(tmp: str) -> None:
    wheel = one("framebus-*.whl")
    name = os.path.basename(wheel)
    assert "-abi3-" in name and "manylinux" in name, name
    env = without_rust(dict(os.environ))
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None
    venv = os.path.join(tmp, "venv")
    run([sys.base_prefix + "/bin/python3", "-m", "venv", venv], env=env)
    py = os.path.join(venv, "bin", "python")
    run([py, "-m", "pip", "install", "-q", wheel, "opencv-python-headless"], env=env, timeout=600)

    shm = os.path.join(tmp, "shm")
    os.makedirs(shm)
    env["FRAMEBUS_SHM_DIR"] = shm
    bus = f"dist{os.getpid()}-{uuid.uuid4().hex[:8]}"
    producer = subprocess.Popen(
        [os.path.join(RELEASE, "framebus-producer"), "--bus", bus, "--size", "320x240", "--fps", "30"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # From outside the source tree: the installed package, not ./framebus-py.
        code = ("import framebus, sys; r = framebus.Reader(sys.argv[1], wait=True); f = r.next(timeout=10); "
                "print(framebus.__file__); print(r.spec.format, f.array.shape, f.seq)")
        out = run([py, "-c", code, bus], env=env, cwd=tmp, timeout=60).stdout.splitlines()
        assert out[0].startswith(venv), out
        assert out[1].startswith("nv12 (360, 320)"), out
        png = os.path.join(tmp, "frame.png")
        run([py, os.path.join(ROOT, "examples", "python", "opencv_view.py"), bus, "--frames", "30",
             "--save", png], env=env, cwd=tmp, timeout=120)
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        producer.terminate()
        try:
            producer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            producer.kill()
            producer.wait()


def test_the_sdist_holds_the_sources() -> None:
    sdist = one("framebus-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = t.getnames()
    top = names[0].split("/")[0]
    for want in ("pyproject.toml", "PKG-INFO"):
        assert f"{top}/{want}" in names, (want, names[:40])
    assert any(n.endswith("framebus/src/lib.rs") for n in names), "the core crate is not in the sdist"
    assert any(n.endswith("python/framebus/__init__.py") for n in names), names[:40]


def test_the_wheel_needs_only_what_its_tag_says() -> None:
    wheel = one("framebus-*.whl")
    # auditwheel reads the ELF's symbol versions and libraries: the tag
    # maturin gave must be one it agrees with.
    p = run([sys.executable, "-m", "auditwheel", "show", wheel])
    print(p.stdout)
    tag = os.path.basename(wheel).rsplit("-", 1)[1].removesuffix(".whl")
    said = " ".join(p.stdout.split())
    assert f'is consistent with the following platform tag: "{tag}"' in said, (tag, said)
    # Only the system's own libraries (no library to bundle).
    assert "libc.so.6" in said and "libpython" not in said, said
    with zipfile.ZipFile(wheel) as z:
        assert any(n.startswith("framebus/_framebus") and n.endswith(".so") for n in z.namelist())
        assert "framebus/py.typed" in z.namelist() or any(n.endswith(".pyi") for n in z.namelist())


def test_lintian_finds_no_error_in_the_deb() -> None:
    deb = one("framebus_*.deb")
    p = subprocess.run(["lintian", "--fail-on", "error", "--display-level", ">=warning", deb],
                       capture_output=True, text=True, timeout=600)
    print(p.stdout)
    assert p.returncode == 0, f"lintian:\n{p.stdout}\n{p.stderr}"
    assert not [l for l in p.stdout.splitlines() if l.startswith("E:")], p.stdout


def test_the_deb_installs_and_serves_in_a_throwaway_root() -> None:
    deb = one("framebus_*.deb")
    info = run(["dpkg-deb", "--field", deb, "Depends"]).stdout
    for lib in ("libavcodec59", "libc6", "adduser"):
        assert lib in info, info
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deb_in_throwaway_root.sh")
    cmd = ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
           "bash", script, deb]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n", *cmd]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    print(out[-6000:])
    assert p.returncode == 0, f"exit {p.returncode} after {time.monotonic() - t0:.0f} s:\n{out[-6000:]}"
    for step in ("== install", "== user", "== files", "verify ok", "== serve", "== done"):
        assert step in p.stdout, (step, out[-4000:])
    assert "status install ok installed" in p.stdout, out[-4000:]
    # The bus is the framebus group's (the packaged config's `group`).
    shm = [l for l in p.stdout.splitlines() if l.rstrip().endswith("framebus.cam0")]
    assert shm and shm[0].startswith("-rw-rw----") and " framebus framebus " in shm[0], shm
    assert "h264,640,360" in p.stdout, out[-4000:]
