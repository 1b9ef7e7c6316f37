"""mgr report: Table 1 markdown, curves, and a self-contained HTML page that renders in Chromium."""
import json
import subprocess

import numpy as np
import pytest

from mgr.train.evaluate import compute_metrics, plot_confusion, write_json
from mgr.train.report import plot_curves, read_run, table1_markdown, table1_rows, write_html


def _fake_run(root, name, modality, top1):
    run = root / name
    run.mkdir(parents=True)
    rows = [{"epoch": e, "train_loss": 3 - e, "train_top1": 0.1 * e, "val_loss": 3.2 - e, "val_top1": 0.08 * e,
             "val_top5": 0.3, "train_seconds": 10.0, "eval_seconds": 2.0} for e in range(3)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "train_config.json").write_text(json.dumps({"modality": modality}))
    (run / "environment.json").write_text(json.dumps({"cpu": "test cpu", "torch": "x"}))
    names = [f"class {i}" for i in range(32)]
    labels = np.array([0, 0, 1, 2])
    logits = np.eye(32, dtype=np.float32)[[0, 1, 1, 2]]
    ev = compute_metrics(logits, labels, names)
    ev["top1"] = top1
    write_json(ev, run / "eval_test.json")
    plot_confusion(ev, names, run / "confusion_test.png")
    return run


def test_table1_and_curves(tmp_path):
    runs = [read_run(_fake_run(tmp_path, n, m, t)) for n, m, t in
            (("rgb", "rgb", 0.4), ("skeleton", "skeleton", 0.3), ("fusion", "fusion", 0.5))]
    md = table1_markdown(table1_rows(runs))
    assert "| fusion | fusion | test | 50.00 |" in md and "| rgb | rgb | test | 40.00 |" in md
    assert "10.0" in md and "2.0" in md                       # train / eval seconds per epoch
    paths = plot_curves(runs, tmp_path / "out")
    assert [p.name for p in paths] == ["accuracy.png", "loss.png"] and all(p.stat().st_size > 5000 for p in paths)
    with pytest.raises(ValueError, match="no log.jsonl"):
        read_run(tmp_path / "out")


def test_html_report_renders_its_images_in_chromium(tmp_path, chromium):
    runs = [read_run(_fake_run(tmp_path, "fusion", "fusion", 0.5))]
    page = write_html(runs, tmp_path / "report" / "report.html")
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3        # accuracy, loss, confusion: inlined
    assert "Touching" not in text and "class 0" in text and "no samples" in text
    # count the images that decoded with a real size, in a real browser
    probe = page.with_name("probe.html")
    probe.write_text(text.replace("</body>", "<script>window.onload=()=>{document.title='ok:'+"
                                  "[...document.images].filter(i=>i.complete&&i.naturalWidth>100).length}</script></body>"))
    out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<title>ok:3</title>" in out.stdout, out.stderr[-2000:]


def test_run_without_eval_file_reports_best_epoch_and_missing_eval_time_as_na(tmp_path):
    run = tmp_path / "skeleton"
    run.mkdir()
    rows = [{"epoch": e, "train_loss": 1.0, "train_top1": 0.5, "train_seconds": 10.0, "val_top1": v,
             "val_top5": v + 0.2, "val_mean_class_accuracy": v / 2} for e, v in enumerate((0.1, 0.5, 0.5, 0.3))]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))   # no eval_seconds, no eval_*.json
    row = table1_rows([read_run(run)])[0]
    assert (row["top1"], row["top5"], row["mean_class_accuracy"]) == (0.5, 0.7, 0.25)   # best.pt's epoch, not last
    assert row["split"] == "val (best epoch 2)" and row["eval_s_per_epoch"] is None
    md = table1_markdown([row])
    assert "| 50.00 | 70.00 | 25.00 | 10.0 | n/a |" in md
    rows[0]["eval_seconds"], rows[2]["eval_seconds"] = 1.0, 3.0                     # some epochs timed
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert table1_rows([read_run(run)])[0]["eval_s_per_epoch"] == 2.0
