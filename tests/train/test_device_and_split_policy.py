"""The one device check (train.device) and the one split policy (train.split.resolve_split)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mgr.train.device import check_device, device_choices, torch_device
from mgr.train.split import RANDOM_SPLIT_SOURCE, random_split, resolve_split, save_split


def test_device_names_and_the_one_message():
    assert [check_device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    assert device_choices() == "auto, cpu or cuda[:N]"
    with pytest.raises(ValueError, match=r"^unknown device 'tpu'; choose auto, cpu or cuda\[:N\]$"):
        check_device("tpu")
    with pytest.raises(ValueError, match=r"^unknown device 'auto'; choose cpu or cuda$"):
        check_device("auto", auto=False, indexed=False)
    with pytest.raises(ValueError, match=r"^unknown device 'cuda:1'; choose auto, cpu or cuda$"):
        check_device("cuda:1", indexed=False)
    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        check_device("cuda:x")


def test_torch_device_resolves_auto_and_refuses_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto") == torch.device("cpu") and torch_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device 'cuda:1' asked for, but torch sees no CUDA device; use device 'cpu'"):
        torch_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("auto") == torch.device("cuda") and torch_device("cuda:1") == torch.device("cuda", 1)
    assert torch_device("auto", rank=1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but only 2 CUDA devices"):
        torch_device("cuda", rank=2)


def test_backends_use_the_one_check():
    from mgr.engines.backends import check_device as backend_check
    assert backend_check("cuda") == "cuda"
    with pytest.raises(ValueError, match=r"^unknown device 'auto'; choose cpu or cuda$"):
        backend_check("auto")


def test_the_device_check_and_split_policy_import_no_torch():
    code = "import sys, mgr.train.device, mgr.train.split; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_split_from_the_explicit_file_then_beside_the_checkpoint(tmp_path):
    explicit, run = tmp_path / "elsewhere.json", tmp_path / "run"
    run.mkdir()
    save_split({"train": ["a"], "val": [], "test": ["b"]}, explicit)
    save_split({"train": ["b"], "val": [], "test": ["a"]}, run / "split.json")
    split, source = resolve_split(explicit, [run / "split.json"])
    assert split["test"] == ["b"] and source == str(explicit)         # the explicit file wins
    split, source = resolve_split(None, [tmp_path / "nope" / "split.json", run / "split.json"])
    assert split["test"] == ["a"] and source == str(run / "split.json")
    with pytest.raises(ValueError, match="cannot read split file"):
        resolve_split(tmp_path / "missing.json", [run / "split.json"])   # an explicit file must exist


def test_missing_split_is_an_error_or_a_seeded_random_split(tmp_path, synth_data):
    from mgr.train.data import scan_dataset
    beside = tmp_path / "run" / "split.json"
    with pytest.raises(ValueError, match=r"split file .*run/split\.json is missing \(no --split-file given\).*"
                                         r"--split-file RUN/split\.json, or --new-split"):
        resolve_split(None, [beside])
    with pytest.raises(ValueError, match=r"split file RUN/split\.json is missing"):
        resolve_split(None)
    clips = scan_dataset(synth_data).clips
    split, source = resolve_split(None, [beside], fallback="random", clips=clips, seed=3)
    assert split == random_split(clips, 3)
    assert source.startswith(RANDOM_SPLIT_SOURCE) and str(beside) in source and "--split random" in source
    later, same = resolve_split(None, [beside], fallback="random")      # no clips: the caller splits later
    assert later is None and same == source
    with pytest.raises(ValueError, match="unknown split fallback"):
        resolve_split(None, fallback="none")


def test_one_machine_record_for_every_benchmark_and_run():
    import subprocess
    import sys
    code = ("import sys, json\nfrom mgr.train.machine import machine_info\ninfo = machine_info(2)\n"
            "assert 'torch' not in sys.modules\nprint(json.dumps(info))")
    info = __import__("json").loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                   check=True).stdout)
    assert info["threads"] == 2 and info["cpu"] and info["logical_cpus"] >= 1 and info["python"]
    assert info["gpus"] is None and info["torch_threads"] is None        # not loaded: not checked, not imported
    assert info["libraries"]["onnxruntime"] and "mediapipe" in info["libraries"]
    import mgr.engines.bench as eb
    import mgr.realtime.bench as rb
    import mgr.train.machine as tm
    assert eb.machine_info is tm.machine_info and rb.machine_info is tm.machine_info
