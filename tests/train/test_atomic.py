"""mgr.train.atomic: one atomic write for every file mgr writes in one go."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mgr.train.atomic import (atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text,
                              durable_replace)


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_content_lands_whole_and_helpers_round_trip(tmp_path):
    f = tmp_path / "sub" / "dir" / "out.bin"           # the parent folders are made
    data = os.urandom(3 << 20)
    assert atomic_write_bytes(f, data) == f
    assert f.read_bytes() == data
    atomic_write_bytes(f, bytearray(b"shorter"))         # replaces, never appends or keeps a tail
    assert f.read_bytes() == b"shorter"
    t = tmp_path / "t.txt"
    atomic_write_text(t, "grüße\nzwei\n")
    assert t.read_bytes() == "grüße\nzwei\n".encode("utf-8")
    atomic_write_text(t, "é", encoding="latin-1")
    assert t.read_bytes() == b"\xe9"
    j = tmp_path / "o.json"
    atomic_write_json(j, {"a": [1, 2]}, indent=2)
    assert j.read_text() == json.dumps({"a": [1, 2]}, indent=2)
    seen = []
    out = atomic_write(tmp_path / "cb.txt", lambda tmp: (seen.append(tmp), Path(tmp).write_text("x")))
    assert out.read_text() == "x" and isinstance(seen[0], str)
    assert Path(seen[0]).parent == tmp_path and not Path(seen[0]).exists()   # the temp sat beside the target
    assert _leftovers(tmp_path, "") == ["cb.txt", "o.json", "sub", "t.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failing_write_fn_leaves_the_old_file_and_no_temp(tmp_path, exc):
    f = tmp_path / "keep.json"
    f.write_text("old")
    tmps = []

    def half_then_raise(tmp):
        tmps.append(tmp)
        Path(tmp).write_text("half a fi")
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(f, half_then_raise)
    assert f.read_text() == "old"
    assert tmps and not os.path.exists(tmps[0])
    assert _leftovers(tmp_path, "keep.json") == []


def test_failure_before_any_write_and_unserialisable_json_leave_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "y", lambda tmp: 1 / 0)
    assert list(tmp_path.iterdir()) == []


def test_temp_names_are_unique_per_call(tmp_path):
    names = []
    for _ in range(5):
        atomic_write(tmp_path / "f", lambda tmp: (names.append(tmp), Path(tmp).write_text("1")))
    assert len(set(names)) == 5 and all(Path(n).name.startswith(".f.") for n in names)


def test_suffix_ends_the_temp_name(tmp_path):
    names = []
    atomic_write(tmp_path / "v.mp4", lambda tmp: names.append(tmp), suffix=".tmp.mp4")
    assert names[0].endswith(".tmp.mp4") and (tmp_path / "v.mp4").exists()


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        f = atomic_write_bytes(tmp_path / f"m{umask:o}", b"x")
        g = atomic_write(tmp_path / f"cb{umask:o}", lambda tmp: Path(tmp).write_bytes(b"y"))
    finally:
        os.umask(old)
    for p in (f, g):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert os.umask(old) == old           # the helper left the process umask as it was
    os.umask(old)


def test_concurrent_threads_never_leave_a_half_file_or_temps(tmp_path):
    f = tmp_path / "shared.bin"
    payloads = [bytes([i]) * (1 << 20) for i in range(4)]
    atomic_write_bytes(f, payloads[0])
    stop = threading.Event()
    errors: list[BaseException] = []
    bad: list[int] = []

    def writer(data):
        try:
            for _ in range(15):
                atomic_write_bytes(f, data)
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        while not stop.is_set():
            got = f.read_bytes()
            if got not in payloads:
                bad.append(len(got))

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert not errors and not bad, (errors, bad)
    assert f.read_bytes() in payloads
    assert _leftovers(tmp_path, "shared.bin") == []


def test_concurrent_processes_never_leave_a_half_file_or_temps(tmp_path):
    f = tmp_path / "shared.json"
    code = ("import sys\nfrom mgr.train.atomic import atomic_write_json\n"
            "for i in range(20):\n"
            "    atomic_write_json(sys.argv[1], {'who': sys.argv[2], 'pad': sys.argv[2] * 200000})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f), str(k)]) for k in range(3)]
    seen = 0
    while any(p.poll() is None for p in procs):
        if f.exists():
            obj = json.loads(f.read_text())        # a half file would not parse
            assert obj["pad"] == obj["who"] * 200000
            seen += 1
    assert all(p.wait() == 0 for p in procs)
    assert json.loads(f.read_text())["who"] in {"0", "1", "2"}
    assert _leftovers(tmp_path, "shared.json") == []


def test_durable_replace_commits_a_streamed_file(tmp_path):
    part = tmp_path / ".v.partial.mp4"
    part.write_bytes(b"frames")
    (tmp_path / "v.mp4").write_bytes(b"old")
    assert durable_replace(part, tmp_path / "v.mp4") == tmp_path / "v.mp4"
    assert (tmp_path / "v.mp4").read_bytes() == b"frames" and not part.exists()


def test_atomic_is_standard_library_only():
    code = ("import sys\nimport mgr.train.atomic\n"
            "bad = [m for m in ('torch', 'numpy', 'typer', 'rich', 'cv2') if m in sys.modules]\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
