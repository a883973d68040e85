"""publication_template: fill the short paper from evaluation summaries and run logs, build the PDF.

The .tex checks always run; the PDF build runs only where latexmk and llncs.cls exist.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "publication_template"
FILL_SCRIPT = TEMPLATE / "fill_paper.py"
BUILD_SCRIPT = TEMPLATE / "build_paper.sh"


def _load_fill_module():
    try:
        return importlib.import_module("publication_template.fill_paper")
    except ImportError:   # the package is not on sys.path (e.g. pytest run from elsewhere)
        spec = importlib.util.spec_from_file_location("publication_template_fill_paper", FILL_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


fp = _load_fill_module()

# Leaderboard rows as they appear in the table, with the decimals the caption states.
ROWS = {"DSC@last": ("dice_final", 4), "FPV@last": ("fpv_final", 2), "FNV@last": ("fnv_final", 2),
        "AUC-DSC": ("dice_auc", 3), "AUC-FPV": ("fpv_auc", 2), "AUC-FNV": ("fnv_auc", 2)}
MEASURE_KEYS = [key for key, _ in ROWS.values()]


# ---------------------------------------------------------------- fixtures following the schemas
def write_summary(folder: Path, mode: str = "interactive", means: dict | None = None,
                  std: dict | None = None, plot: str | None = "curves.png", n_steps: int = 11,
                  n_missing: int = 0, write_png: bool = True) -> Path:
    """A summary.json in evaluation_metrics' fixed schema (and a small PNG when ``plot``)."""
    folder.mkdir(parents=True, exist_ok=True)
    means = means if means is not None else {
        "dice_auc": 6.54321, "fpv_auc": 12.345, "fnv_auc": 3.0, "dice_final": 0.80125,
        "fpv_final": 1.005, "fnv_final": 0.5}
    std = std if std is not None else {key: 0.1 for key in MEASURE_KEYS}
    summary = {
        "mode": mode, "n_cases": 7, "n_cases_without_lesions": 1, "n_missing_predictions": n_missing,
        "missing_predictions": [f"case{i}_pred0.nii.gz" for i in range(n_missing)],
        "means": means, "std": std,
        "per_step_means": {"dice": [0.5] * n_steps, "fpv": [1.0] * n_steps, "fnv": [1.0] * n_steps},
        "detection": {"per_step": [{"step": s, "tp": 3, "fn": 1, "fp": 2, "sensitivity": 0.75,
                                    "precision": 0.6, "f1": 0.667} for s in range(n_steps)]},
        "plot": plot,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if plot and write_png:
        (folder / plot).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)) + folder.name.encode())
    return folder / "summary.json"


def write_run_log(path: Path, task: int = 1, **overrides) -> Path:
    """A run_log.json in the local challenge run's fixed schema."""
    log = {"task": task, "model": "/opt/ml/model/Dataset501", "trainer": "nnUNetTrainer_ClickBall_250epochs",
           "plans": "nnUNetResEncUNetLPlans", "configuration": "3d_fullres", "folds": [0, 1, 2, 3, 4],
           "encoding": "edt_ball", "device": "cuda", "n_runs": 77, "median_seconds_per_run": 41.26,
           "max_seconds_per_run": 63.04, "max_peak_memory_mb": 3120.6, "n_over_budget": 0,
           "time_budget_seconds": 300, "runs": [{"case": "c1", "step": 0, "seconds": 41.2}]}
    log.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log))
    return path


# ---------------------------------------------------------------- parsing the generated .tex
def parse_table(results_tex: str) -> tuple[list[str], dict[str, list[tuple[float | None, float | None, str]]]]:
    """(task column names, row label -> [(mean, std, cell text) per task]) from results.tex."""
    header = re.search(r"^Measure & Unit & (.*?) \\\\$", results_tex, re.M)
    assert header, results_tex
    columns = [c.strip() for c in header.group(1).split("&")]
    rows = {}
    for label in ROWS:
        match = re.search(rf"^{re.escape(label)} \$\\(?:up|down)arrow\$ & [^&]+ & (.*?) \\\\$", results_tex, re.M)
        assert match, f"row {label} not found in:\n{results_tex}"
        cells = []
        for cell in (c.strip() for c in match.group(1).split("&")):
            if cell == "n/a":
                cells.append((None, None, cell))
                continue
            parts = cell.split(r"$\pm$")
            cells.append((float(parts[0]), float(parts[1]) if len(parts) == 2 else None, cell))
        rows[label] = cells
    return columns, rows


def parse_macros(facts_tex: str) -> dict[str, str]:
    return dict(re.findall(r"^\\newcommand\{\\(\w+)\}\{(.*)\}$", facts_tex, re.M))


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
            and "build" not in p.relative_to(folder).parts}


# ---------------------------------------------------------------- end to end from phantom results
def _phantom_evaluation(tmp_path: Path) -> Path:
    """Score 3 tiny phantom cases (one without lesions) over 11 steps with evaluation_metrics."""
    from autopet_common.image_io import write_mask
    from autopet_common.phantoms import make_petct_case
    from evaluation_metrics.evaluate import evaluate_folder

    gt_dir, pred_dir, out_dir = tmp_path / "gt", tmp_path / "pred", tmp_path / "eval_task1"
    rng = np.random.default_rng(7)
    for index, empty in enumerate((False, False, True)):
        case = make_petct_case(size="tiny", seed=index, n_lesions=None if empty else 3, empty=empty)
        label = case.label > 0
        write_mask(label, case.geometry, gt_dir / f"case{index}.nii.gz")
        components, n_components = ndimage.label(label, structure=np.ones((3, 3, 3)))
        lesion_voxels = np.argwhere(label)
        order = rng.permutation(len(lesion_voxels))
        for step in range(11):
            # Each click recovers more of the lesions and shrinks a false-positive block; the
            # last lesion is missed entirely until step 6 (a false negative volume).
            pred = np.zeros_like(label)
            keep = lesion_voxels[order[: int(len(order) * (0.3 + 0.06 * step))]]
            pred[tuple(keep.T)] = True
            if step < 6 and n_components > 1:
                pred[components == n_components] = False
            pred[2:6, 2:6, 2:2 + max(1, 9 - step)] = True
            write_mask(pred, case.geometry, pred_dir / f"case{index}_pred{step}.nii.gz")
    evaluate_folder(gt_dir, pred_dir, out_dir=out_dir, n_clicks=11, plot=True, progress=False)
    return out_dir


def test_fill_from_phantom_evaluation_table_equals_summary(tmp_path):
    eval_dir = _phantom_evaluation(tmp_path)
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["plot"] and (eval_dir / summary["plot"]).is_file()
    write_run_log(eval_dir / "run_log.json", task=1)
    before = tree_digest(TEMPLATE)

    out = tmp_path / "paper"
    written = fp.fill_paper(eval_dir, out, team="Phantom Team")

    columns, rows = parse_table((out / "results.tex").read_text())
    assert columns == ["Task 1"]
    for label, (key, decimals) in ROWS.items():
        mean, spread, cell = rows[label][0]
        expected_mean, expected_std = summary["means"][key], summary["std"][key]
        if expected_mean is None:
            assert cell == "n/a"
            continue
        assert mean == pytest.approx(expected_mean, abs=0.5 * 10 ** -decimals + 1e-12), label
        assert len(cell.split(r" $\pm$ ")[0].split(".")[1]) == decimals, cell
        if expected_std is not None:
            assert spread == pytest.approx(expected_std, abs=0.5 * 10 ** -decimals + 1e-12), label
    # the empty case makes the phantom FNV/Dice means NaN-aware: 3 cases, 1 without lesions
    assert "3 cases, 1 without lesions" in (out / "results.tex").read_text()

    figure = out / "figures" / "task1_curves.png"
    assert written["figure_task1"] == figure
    assert figure.read_bytes() == (eval_dir / summary["plot"]).read_bytes()
    assert r"\includegraphics[width=\linewidth]{figures/task1_curves.png}" in (out / "results.tex").read_text()

    macros = parse_macros((out / "method_facts.tex").read_text())
    assert macros["PaperTeam"] == "Phantom Team"
    assert macros["TaskOneTrainer"] == r"nnUNetTrainer\_\allowbreak{}ClickBall\_\allowbreak{}250epochs"
    assert macros["TaskOneFolds"] == "0, 1, 2, 3, 4"
    assert macros["TaskOneEncoding"] == r"edt\_\allowbreak{}ball"
    assert macros["TaskOneMedianSecondsPerRun"] == "41.26"
    assert macros["TaskOneRunsFailed"] == "n/a"            # n_failed absent from this log
    assert macros["TaskOneMaxPeakMemoryMB"] == "3121"
    assert macros["TaskOneCases"] == "3"
    assert r"\TaskOneModelFreefalse" in (out / "method_facts.tex").read_text()
    assert float(macros["TaskOneDiceFinal"]) == pytest.approx(summary["means"]["dice_final"], abs=5e-5)
    assert tree_digest(TEMPLATE) == before, "fill_paper must never edit the template folder"


# ---------------------------------------------------------------- rounding, nulls, Task 2
def test_rounding_is_half_away_from_zero_on_the_json_decimal():
    assert fp.format_value(0.80125, 4) == "0.8013"
    assert fp.format_value(1.005, 2) == "1.01"      # binary round() would give 1.0
    assert fp.format_value(2.675, 2) == "2.68"      # binary round() would give 2.67
    assert fp.format_value(6.54321, 3) == "6.543"
    assert fp.format_value(12, 2) == "12.00"
    assert fp.format_value(-0.001, 2) == "0.00"     # never "-0.00"
    assert fp.format_value(None, 2) == "n/a"
    assert fp.format_value(float("nan"), 2) == "n/a"


def test_table_rounding_nulls_and_both_tasks(tmp_path):
    write_summary(tmp_path / "t1", means={"dice_auc": 6.54321, "fpv_auc": 12.345, "fnv_auc": None,
                                          "dice_final": 0.80125, "fpv_final": 1.005, "fnv_final": 0.5},
                  std={"dice_auc": 0.5, "fpv_auc": 3, "fnv_auc": None, "dice_final": 0.1,
                       "fpv_final": None, "fnv_final": 0.25})
    write_summary(tmp_path / "t2", mode="task2", n_steps=2, n_missing=2, plot="task2.png",
                  means={"dice_auc": 0.7, "fpv_auc": 0.0, "fnv_auc": 2.5, "dice_final": 0.75,
                         "fpv_final": 0.0, "fnv_final": 1.0}, std={})
    out = tmp_path / "out"
    fp.fill_paper(tmp_path / "t1", out, task2_dir=tmp_path / "t2")
    text = (out / "results.tex").read_text()
    columns, rows = parse_table(text)
    assert columns == ["Task 1", "Task 2"]
    assert rows["DSC@last"][0][2] == r"0.8013 $\pm$ 0.1000"
    assert rows["FPV@last"][0][2] == "1.01"                 # null std: mean only
    assert rows["AUC-DSC"][0][2] == r"6.543 $\pm$ 0.500"
    assert rows["AUC-FPV"][0][2] == r"12.35 $\pm$ 3.00"
    assert rows["AUC-FNV"][0][2] == "n/a"                   # null mean
    assert rows["DSC@last"][1][2] == "0.7500"               # std {} -> no spread
    assert rows["AUC-FPV"][1][2] == "0.00"
    assert "Task 2: 2 missing prediction file(s)" in text
    assert "over 2 click steps" in text
    assert (out / "figures" / "task2_curves.png").read_bytes() == (tmp_path / "t2" / "task2.png").read_bytes()
    macros = parse_macros((out / "method_facts.tex").read_text())
    assert r"\HaveTaskTwotrue" in (out / "method_facts.tex").read_text()
    assert macros["TaskOneFnvAuc"] == "n/a" and macros["TaskTwoDiceFinal"] == "0.7500"
    assert macros["TaskOneTrainer"] == "n/a"                # no run log in the folder


def test_missing_task2_and_null_plot(tmp_path):
    write_summary(tmp_path / "t1", plot=None)
    out = tmp_path / "out"
    written = fp.fill_paper(tmp_path / "t1", out)
    text = (out / "results.tex").read_text()
    columns, rows = parse_table(text)
    assert columns == ["Task 1"] and all(len(cells) == 1 for cells in rows.values())
    assert "Task 2" not in text
    assert r"\includegraphics" not in text and not (out / "figures").exists()
    assert set(written) == {"results", "method_facts"}
    facts = (out / "method_facts.tex").read_text()
    assert r"\HaveTaskTwofalse" in facts and parse_macros(facts)["TaskTwoDiceFinal"] == "n/a"


def test_user_text_is_latex_escaped(tmp_path):
    write_summary(tmp_path / "t1")
    write_run_log(tmp_path / "log.json", folds="all", trainer=None, encoding="gauss_sigma3 (100%)", n_failed=2,
                  model="model-free")
    out = tmp_path / "out"
    fp.fill_paper(tmp_path / "t1", out, task1_run_log=tmp_path / "log.json", team="A_B & C #1",
                  title="Clicks: 50% better {really}", authors="Ann One; Bob Two")
    macros = parse_macros((out / "method_facts.tex").read_text())
    assert macros["PaperTeam"] == r"A\_B \& C \#1"
    assert macros["PaperTitle"] == r"Clicks: 50\% better \{really\}"
    assert macros["PaperAuthors"] == r"Ann One \and Bob Two"
    assert macros["TaskOneFolds"] == "all" and macros["TaskOneRunsFailed"] == "2"
    assert macros["TaskOneTrainer"] == "n/a"                 # model-free baseline: null strings
    assert macros["TaskOneEncoding"] == r"gauss\_\allowbreak{}sigma3 (100\%)"
    assert r"\TaskOneModelFreetrue" in (out / "method_facts.tex").read_text()


# ---------------------------------------------------------------- bad input: message, exit code, no output
def _bad_inputs(tmp_path: Path):
    good = tmp_path / "good"
    write_summary(good)
    missing = tmp_path / "missing"
    missing.mkdir()
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "summary.json").write_text('{"mode": "interactive", "n_cases": 3,')
    static = tmp_path / "static"
    write_summary(static, mode="static")
    no_png = tmp_path / "no_png"
    write_summary(no_png, write_png=False)
    bad_value = tmp_path / "bad_value"
    write_summary(bad_value, means={**{k: 0.5 for k in MEASURE_KEYS}, "dice_final": "0.5"})
    wrong_log = write_run_log(tmp_path / "wrong_log.json", task=2)
    return {
        "missing summary": (["--task1", str(missing)], str(missing / "summary.json"), "file not found"),
        "no folder": (["--task1", str(tmp_path / "nowhere")], str(tmp_path / "nowhere"), "folder not found"),
        "malformed JSON": (["--task1", str(malformed)], str(malformed / "summary.json"), "not valid JSON"),
        "static mode": (["--task1", str(static)], str(static / "summary.json"), "mode is 'static'"),
        "task1 as task2": (["--task1", str(good), "--task2", str(good)], str(good / "summary.json"),
                           "mode is 'interactive'"),
        "missing png": (["--task1", str(no_png)], "curves.png", "does not exist"),
        "string value": (["--task1", str(bad_value)], str(bad_value / "summary.json"), "dice_final"),
        "wrong run log": (["--task1", str(good), "--task1_run_log", str(wrong_log)], str(wrong_log),
                          "expected 1"),
    }


def test_bad_input_fails_clearly_without_output(tmp_path, capsys):
    for name, (args, named, reason) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        status = fp.main([*args, "-o", str(out)])
        err = capsys.readouterr().err
        assert status == 2, name
        assert ("error: " in err.splitlines()[0]) and named in err and reason in err, (name, err)
        assert not out.exists(), f"{name}: partial output written"


def test_cli_script_runs_and_fails_with_nonzero_exit(tmp_path):
    write_summary(tmp_path / "t1")
    ok = subprocess.run([sys.executable, str(FILL_SCRIPT), "--task1", str(tmp_path / "t1"),
                         "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "wrote results" in ok.stdout and (tmp_path / "out" / "results.tex").is_file()
    bad = subprocess.run([sys.executable, str(FILL_SCRIPT), "--task1", str(tmp_path / "absent"),
                          "-o", str(tmp_path / "out2")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and ("error: " in bad.stderr.splitlines()[0]) and "absent" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "out2").exists()


def test_refuses_to_write_into_the_template_folder(tmp_path):
    write_summary(tmp_path / "t1")
    before = tree_digest(TEMPLATE)
    with pytest.raises(fp.PaperInputError, match="template folder"):
        fp.fill_paper(tmp_path / "t1", TEMPLATE)
    assert tree_digest(TEMPLATE) == before


# ---------------------------------------------------------------- build script
def test_build_script_says_what_to_install_without_tex(tmp_path):
    write_summary(tmp_path / "t1")
    env = {**os.environ, "LATEXMK": str(tmp_path / "no-latexmk"), "KPSEWHICH": str(tmp_path / "no-kpsewhich"),
           "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(BUILD_SCRIPT), str(tmp_path / "out"), "--task1", str(tmp_path / "t1")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "texlive-publishers" in result.stderr and "latexmk" in result.stderr and "llncs.cls" in result.stderr
    assert (tmp_path / "out" / "results.tex").is_file()      # the filled sources are still there
    assert not (tmp_path / "out" / "paper.pdf").exists()


def _tex_available() -> bool:
    if shutil.which("latexmk") is None or shutil.which("kpsewhich") is None:
        return False
    found = subprocess.run(["kpsewhich", "llncs.cls"], capture_output=True, text=True)
    return bool(found.stdout.strip())


@pytest.mark.skipif(not _tex_available(), reason="latexmk or llncs.cls (Debian: texlive-publishers) not installed")
def test_pdf_builds_without_errors(tmp_path):
    write_summary(tmp_path / "t1")
    write_run_log(tmp_path / "t1" / "run_log.json")
    write_summary(tmp_path / "t2", mode="task2", n_steps=2, plot=None)
    # a real PNG, since pdflatex reads it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot(range(11), np.linspace(0.5, 0.8, 11))
    fig.savefig(tmp_path / "t1" / "curves.png", dpi=50)
    plt.close(fig)
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(BUILD_SCRIPT), str(out), "--task1", str(tmp_path / "t1"),
                             "--task2", str(tmp_path / "t2"), "--team", "Phantom_Team & Co"],
                            capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable},
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    pdf = out / "paper.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    log = (out / "paper.log").read_text(errors="replace")
    assert "There were undefined references" not in log
    assert not re.search(r"Citation `[^']+' .*undefined", log)
    assert not re.search(r"Reference `[^']+' .*undefined", log)
    assert not list(TEMPLATE.glob("paper.aux")), "the build must not write into the template folder"
    if shutil.which("pdffonts"):   # publishers reject bitmap (Type 3) fonts
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
        assert "Type 3" not in fonts, fonts


@pytest.mark.skipif(not _tex_available() or shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                    reason="latexmk, llncs.cls or poppler-utils not installed (publication_template/install_tex.sh)")
def test_the_paper_of_a_local_run_reads_right_on_its_first_page(tmp_path, tiny_task1_cohort):
    """The paper as a team makes it: a real local challenge run (phantoms, model-free), filled and
    built with the template's own commands, then read as a reader would: the first page's text
    (title, team, abstract) and picture, and the run's own numbers in the results table."""
    from local_challenge.runner import run_local_challenge

    run = tmp_path / "run"
    result = run_local_challenge(tiny_task1_cohort, run, model="model-free", progress=False, overlays=False,
                                 in_process=True)
    out = tmp_path / "paper"
    built = subprocess.run(["bash", str(BUILD_SCRIPT), str(out), "--task1", str(run), "--team", "Phantom Team",
                            "--title", "Clicks on Phantoms"], capture_output=True, text=True,
                           env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    pdf = out / "paper.pdf"
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"], capture_output=True,
                           text=True, check=True).stdout
    assert "Clicks on Phantoms" in first and "Phantom Team" in first, first[:1500]
    assert "autoPET" in first and "Abstract" in first
    whole = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    means = result.summary["means"]
    assert f"{means['dice_final']:.4f}" in whole and f"{means['dice_auc']:.3f}" in whole, whole[-3000:]
    assert "??" not in whole  # no unresolved reference or citation
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
                   check=True)
    from PIL import Image

    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"))
    assert page.shape[0] > page.shape[1] > 300  # a portrait page
    assert 0.01 < float((page < 128).mean()) < 0.3  # ink on it, not a blank or a black page
