"""Fill the challenge short paper's results and method facts from this repository's own outputs.

Inputs (schemas fixed by the tools that write them):

* ``summary.json`` of ``evaluation_metrics`` (one folder per task) and the Dice/FPV/FNV-versus-clicks
  PNG named by its ``"plot"`` field, in the same folder;
* optionally the local challenge run's ``run_log.json`` (trainer, plans, folds, encoding, time and
  memory per run).

Outputs, all in ``OUTDIR`` (the template in ``publication_template/`` is never touched):

* ``results.tex``: the six leaderboard measures per task (table) and the curve figure(s);
* ``method_facts.tex``: ``\\newcommand`` macros (title, team, trainer, folds, encoding, seconds per
  run, peak memory, headline results) that ``paper.tex`` uses in its prose;
* ``figures/task1_curves.png`` (and ``task2_curves.png``): copies of the evaluation's PNGs.

Rounding (stated in the table caption as well): Dice at the last step to 4 decimals, AUC of Dice to
3 decimals, volumes (ml) and their AUCs to 2 decimals, half away from zero on the decimal value
JSON stores; ``null`` or NaN prints as "n/a".

All inputs are read and checked before the first byte is written, and every file is written
atomically, so bad input leaves no partial output.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Sequence

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_bytes, atomic_write_text

TEMPLATE_DIR = Path(__file__).resolve().parent


class PaperInputError(InputError):
    """A summary.json or run_log.json the paper is filled from is missing or malformed."""


@dataclass(frozen=True)
class Measure:
    """One leaderboard measure: summary key, row label, unit, decimals, better direction."""

    key: str
    label: str
    unit: str
    decimals: int
    higher_is_better: bool


# The six leaderboard measures, in the challenge's leaderboard order.
LEADERBOARD_MEASURES: tuple[Measure, ...] = (
    Measure("dice_final", "DSC@last", "--", 4, True),
    Measure("fpv_final", "FPV@last", "ml", 2, False),
    Measure("fnv_final", "FNV@last", "ml", 2, False),
    Measure("dice_auc", "AUC-DSC", "step", 3, True),
    Measure("fpv_auc", "AUC-FPV", r"ml$\cdot$step", 2, False),
    Measure("fnv_auc", "AUC-FNV", r"ml$\cdot$step", 2, False),
)

# Summary mode each task's evaluation must have been run in.
EXPECTED_MODE = {1: "interactive", 2: "task2"}
TASK_WORD = {1: "One", 2: "Two"}   # LaTeX macro names cannot hold digits
FIGURE_NAME = {1: "task1_curves.png", 2: "task2_curves.png"}

NOT_AVAILABLE = "n/a"

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped, safe inside a macro or table cell."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def latex_identifier(text: str) -> str:
    """``text`` (a trainer name, path, ...) escaped, with line-break chances after ``_`` and ``/``.

    Long nnU-Net names such as ``nnUNetTrainer_ClickBall_250epochs`` would otherwise overrun
    the LNCS column.
    """
    escaped = latex_escape(text)
    return escaped.replace(r"\_", r"\_\allowbreak{}").replace("/", r"/\allowbreak{}")


def format_value(value: float | None, decimals: int) -> str:
    """``value`` rounded half away from zero to ``decimals`` places; "n/a" for None or NaN.

    Rounds the shortest decimal representation of the float (what the JSON file shows), so
    0.125 -> 0.13 as a reader of summary.json expects, not 0.12 as binary rounding would give.
    """
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    quantum = Decimal(1).scaleb(-decimals)
    rounded = Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)   # never print "-0.00"
    return f"{rounded:f}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_json(path: Path, what: str) -> Any:
    from autopet_common.image_io import read_json

    if not path.is_file():
        raise PaperInputError(f"{what}: file not found: {path}")
    return read_json(path, f"{what}:", error=PaperInputError)


@dataclass
class TaskResults:
    """One task's evaluation summary, checked: means/std per measure (None = not available)."""

    task: int
    folder: Path
    mode: str
    n_cases: int
    n_cases_without_lesions: int
    n_missing_predictions: int
    means: dict[str, float | None]
    std: dict[str, float | None]
    n_steps: int
    plot: Path | None


def load_summary(folder: str | os.PathLike, task: int) -> TaskResults:
    """Read and check ``folder/summary.json`` written by ``evaluation_metrics`` for ``task`` (1 or 2).

    Raises :class:`PaperInputError` naming the file when it is missing, not JSON, of the wrong
    mode (Task 1 must be "interactive", Task 2 "task2"), lacks a leaderboard measure, or names
    a curve PNG that is not in the folder.
    """
    folder = Path(folder)
    what = f"Task {task} summary"
    if not folder.is_dir():
        raise PaperInputError(f"{what}: folder not found: {folder}")
    path = folder / "summary.json"
    data = _read_json(path, what)
    if not isinstance(data, dict):
        raise PaperInputError(f"{what}: {path}: expected a JSON object, found {type(data).__name__}")
    mode = data.get("mode")
    if mode != EXPECTED_MODE[task]:
        raise PaperInputError(
            f"{what}: {path}: mode is {mode!r}, but the paper's Task {task} leaderboard needs "
            f"mode {EXPECTED_MODE[task]!r} (the six interactive measures); re-run evaluation_metrics "
            f"in {EXPECTED_MODE[task]} mode")
    counts = {}
    for key in ("n_cases", "n_cases_without_lesions", "n_missing_predictions"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PaperInputError(f"{what}: {path}: {key!r} must be a non-negative integer, found {value!r}")
        counts[key] = value
    means_raw = data.get("means")
    if not isinstance(means_raw, dict):
        raise PaperInputError(f"{what}: {path}: 'means' must be an object of measures")
    std_raw = data.get("std") or {}
    if not isinstance(std_raw, dict):
        raise PaperInputError(f"{what}: {path}: 'std' must be an object of measures or null")
    means: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for measure in LEADERBOARD_MEASURES:
        if measure.key not in means_raw:
            raise PaperInputError(f"{what}: {path}: 'means' lacks the leaderboard measure {measure.key!r}")
        for source, target, name in ((means_raw, means, "means"), (std_raw, std, "std")):
            value = source.get(measure.key)
            if value is not None and not _is_number(value):
                raise PaperInputError(f"{what}: {path}: {name}.{measure.key} must be a number or null, "
                                      f"found {value!r}")
            target[measure.key] = None if value is None else float(value)
    per_step = data.get("per_step_means") or {}
    dice_steps = per_step.get("dice") if isinstance(per_step, dict) else None
    n_steps = len(dice_steps) if isinstance(dice_steps, list) else 0
    plot_name = data.get("plot")
    plot = None
    if plot_name is not None:
        if not isinstance(plot_name, str) or not plot_name or Path(plot_name).name != plot_name:
            raise PaperInputError(f"{what}: {path}: 'plot' must be a file name in the same folder or "
                                  f"null, found {plot_name!r}")
        plot = folder / plot_name
        if not plot.is_file():
            raise PaperInputError(f"{what}: {path} names the curve {plot_name!r}, but {plot} does not exist")
    return TaskResults(task=task, folder=folder, mode=mode, means=means, std=std, n_steps=n_steps,
                       plot=plot, **counts)


@dataclass
class RunFacts:
    """Method facts of one task's local challenge run (strings None for the model-free baseline)."""

    task: int
    source: Path | None
    values: dict[str, Any] = field(default_factory=dict)


RUN_LOG_STRING_KEYS = ("model", "trainer", "plans", "configuration", "encoding", "device")
RUN_LOG_NUMBER_KEYS = ("n_runs", "median_seconds_per_run", "max_seconds_per_run",
                       "max_peak_memory_mb", "n_over_budget", "n_failed", "time_budget_seconds")


def load_run_log(path: str | os.PathLike | None, task: int) -> RunFacts:
    """Read and check the local challenge run's ``run_log.json`` for ``task``; None -> no facts.

    Raises :class:`PaperInputError` when the file is missing, not JSON, written for the other
    task, or has a field of the wrong type.
    """
    if path is None:
        return RunFacts(task=task, source=None)
    path = Path(path)
    what = f"Task {task} run log"
    data = _read_json(path, what)
    if not isinstance(data, dict):
        raise PaperInputError(f"{what}: {path}: expected a JSON object, found {type(data).__name__}")
    if data.get("task") != task:
        raise PaperInputError(f"{what}: {path}: 'task' is {data.get('task')!r}, expected {task}")
    values: dict[str, Any] = {}
    for key in RUN_LOG_STRING_KEYS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise PaperInputError(f"{what}: {path}: {key!r} must be a string or null, found {value!r}")
        values[key] = value
    for key in RUN_LOG_NUMBER_KEYS:
        value = data.get(key)
        if value is not None and not _is_number(value):
            raise PaperInputError(f"{what}: {path}: {key!r} must be a number or null, found {value!r}")
        values[key] = value
    folds = data.get("folds")
    if isinstance(folds, bool) or (folds is not None and not isinstance(folds, (str, int, list))):
        raise PaperInputError(f"{what}: {path}: 'folds' must be a list, a string, an integer or null, "
                              f"found {folds!r}")
    if isinstance(folds, list) and not all(isinstance(f, (int, str)) and not isinstance(f, bool) for f in folds):
        raise PaperInputError(f"{what}: {path}: 'folds' entries must be integers or strings, found {folds!r}")
    values["folds"] = folds
    return RunFacts(task=task, source=path, values=values)


def find_run_log(folder: Path) -> Path | None:
    """``folder/run_log.json`` when it exists (the default place to look for a task's facts)."""
    candidate = Path(folder) / "run_log.json"
    return candidate if candidate.is_file() else None


def _cell(results: TaskResults, measure: Measure) -> str:
    mean = format_value(results.means[measure.key], measure.decimals)
    if mean == NOT_AVAILABLE:
        return NOT_AVAILABLE
    spread = format_value(results.std.get(measure.key), measure.decimals)
    return mean if spread == NOT_AVAILABLE else f"{mean} $\\pm$ {spread}"


def render_results_tex(tasks: Sequence[TaskResults], figure_paths: dict[int, str | None]) -> str:
    """The LaTeX of the results table (one column per task given) and the curve figure(s).

    Each measure row reads ``<label> & <unit> & <Task 1 cell> [& <Task 2 cell>] \\\\``, a cell
    being ``mean $\\pm$ std``, ``mean`` or ``n/a``. ``figure_paths`` maps a task to the figure path
    relative to the output folder (None: no curve available).
    """
    columns = " & ".join(f"Task {t.task}" for t in tasks)
    lines = [
        "% Generated by publication_template/fill_paper.py -- do not edit; re-run the script.",
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Leaderboard measures, mean $\pm$ standard deviation over the evaluated cases ("
        + "; ".join(f"Task {t.task}: {t.n_cases} cases, {t.n_cases_without_lesions} without lesions"
                    for t in tasks)
        + r"). DSC: Dice similarity coefficient; FPV/FNV: false positive/negative volume; "
          r"@last: after the last click step; AUC: trapezoid area over the click steps. "
          r"Rounded half away from zero: DSC@last to 4, AUC-DSC to 3, volumes to 2 decimals. "
          r"$\uparrow$ higher is better, $\downarrow$ lower is better.}",
        r"\label{tab:results}",
        r"\begin{tabular}{ll" + "r" * len(tasks) + "}",
        r"\toprule",
        rf"Measure & Unit & {columns} \\",
        r"\midrule",
    ]
    for measure in LEADERBOARD_MEASURES:
        arrow = r"$\uparrow$" if measure.higher_is_better else r"$\downarrow$"
        cells = " & ".join(_cell(t, measure) for t in tasks)
        lines.append(f"{measure.label} {arrow} & {measure.unit} & {cells} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    missing = [t for t in tasks if t.n_missing_predictions]
    if missing:
        # evaluation_metrics leaves a case with any missing step file out of the means.
        note = "; ".join(f"Task {t.task}: {t.n_missing_predictions} missing prediction file(s)" for t in missing)
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(note)
                     + r"; cases with a missing prediction are not in the means.}")
    lines += [r"\end{table}", ""]
    for t in tasks:
        path = figure_paths.get(t.task)
        steps = f"{t.n_steps} click steps" if t.n_steps else "the click steps"
        if path is None:
            lines += [f"% Task {t.task}: the evaluation wrote no curve PNG (its summary's 'plot' is null).", ""]
            continue
        lines += [
            r"\begin{figure}[t]",
            r"\centering",
            rf"\includegraphics[width=\linewidth]{{{path}}}",
            rf"\caption{{Task {t.task}: mean Dice, false positive and false negative volume versus "
            rf"the number of clicks over {steps} ({t.n_cases} cases).}}",
            rf"\label{{fig:task{t.task}-curves}}",
            r"\end{figure}",
            "",
        ]
    return "\n".join(lines)


def _folds_text(folds: Any) -> str:
    if folds is None:
        return NOT_AVAILABLE
    if isinstance(folds, list):
        return ", ".join(str(f) for f in folds) if folds else NOT_AVAILABLE
    return str(folds)


def _macro(name: str, value: str) -> str:
    return f"\\newcommand{{\\{name}}}{{{value}}}"


def render_method_facts_tex(title: str, team: str, authors: str, institute: str,
                            tasks: Sequence[TaskResults], facts: dict[int, RunFacts]) -> str:
    """``\\newcommand`` macros for paper.tex: title, team, authors (``;``-separated),
    per-task run facts and headline results.

    Per task ``X`` in {One, Two}: ``\\TaskXTrainer``, ``\\TaskXPlans``, ``\\TaskXConfiguration``,
    ``\\TaskXFolds``, ``\\TaskXEncoding``, ``\\TaskXDevice``, ``\\TaskXModel``, ``\\TaskXRuns``,
    ``\\TaskXMedianSecondsPerRun``, ``\\TaskXMaxSecondsPerRun``, ``\\TaskXMaxPeakMemoryMB``,
    ``\\TaskXRunsOverBudget``, ``\\TaskXRunsFailed``, ``\\TaskXTimeBudgetSeconds``, ``\\TaskXCases`` and one macro per
    leaderboard measure (``\\TaskXDiceFinal`` ...). Missing facts read "n/a". ``\\ifHaveTaskTwo``
    tells paper.tex whether Task 2 results were given, ``\\ifTaskXModelFree`` whether the run
    log's model is the model-free baseline.
    """
    by_task = {t.task: t for t in tasks}
    lines = [
        "% Generated by publication_template/fill_paper.py -- do not edit; re-run the script.",
        _macro("PaperTitle", latex_escape(title)),
        _macro("PaperTeam", latex_escape(team)),
        _macro("PaperAuthors", r" \and ".join(latex_escape(a.strip()) for a in authors.split(";") if a.strip())),
        _macro("PaperInstitute", latex_escape(institute)),
        r"\newif\ifHaveTaskOne",
        r"\newif\ifHaveTaskTwo",
        r"\newif\ifTaskOneModelFree",
        r"\newif\ifTaskTwoModelFree",
    ]
    measure_macro = {"dice_final": "DiceFinal", "fpv_final": "FpvFinal", "fnv_final": "FnvFinal",
                     "dice_auc": "DiceAuc", "fpv_auc": "FpvAuc", "fnv_auc": "FnvAuc"}
    for task in (1, 2):
        word = TASK_WORD[task]
        results = by_task.get(task)
        lines.append(f"\\HaveTask{word}{'true' if results else 'false'}")
        values = facts.get(task, RunFacts(task=task, source=None)).values
        # The local challenge logs model "model-free" for the baseline without a network.
        lines.append(f"\\Task{word}ModelFree{'true' if values.get('model') == 'model-free' else 'false'}")

        def text(key: str) -> str:
            value = values.get(key)
            return NOT_AVAILABLE if value is None else latex_identifier(value)

        def number(key: str, decimals: int) -> str:
            return format_value(values.get(key), decimals)

        lines += [
            f"% Task {task}" + (f": facts from {facts[task].source.name}" if task in facts and facts[task].source
                                else ": no run log given"),
            _macro(f"Task{word}Model", text("model")),
            _macro(f"Task{word}Trainer", text("trainer")),
            _macro(f"Task{word}Plans", text("plans")),
            _macro(f"Task{word}Configuration", text("configuration")),
            _macro(f"Task{word}Folds", latex_escape(_folds_text(values.get("folds")))),
            _macro(f"Task{word}Encoding", text("encoding")),
            _macro(f"Task{word}Device", text("device")),
            _macro(f"Task{word}Runs", number("n_runs", 0)),
            _macro(f"Task{word}MedianSecondsPerRun", number("median_seconds_per_run", 2)),
            _macro(f"Task{word}MaxSecondsPerRun", number("max_seconds_per_run", 2)),
            _macro(f"Task{word}MaxPeakMemoryMB", number("max_peak_memory_mb", 0)),
            _macro(f"Task{word}RunsOverBudget", number("n_over_budget", 0)),
            _macro(f"Task{word}RunsFailed", number("n_failed", 0)),
            _macro(f"Task{word}TimeBudgetSeconds", number("time_budget_seconds", 0)),
            _macro(f"Task{word}Cases", str(results.n_cases) if results else NOT_AVAILABLE),
        ]
        for measure in LEADERBOARD_MEASURES:
            value = results.means[measure.key] if results else None
            lines.append(_macro(f"Task{word}{measure_macro[measure.key]}", format_value(value, measure.decimals)))
    return "\n".join(lines) + "\n"


def _atomic_copy(source: Path, target: Path) -> None:
    atomic_write_bytes(target, source.read_bytes())


def fill_paper(task1_dir: str | os.PathLike, output_dir: str | os.PathLike,
               task2_dir: str | os.PathLike | None = None,
               task1_run_log: str | os.PathLike | None = None,
               task2_run_log: str | os.PathLike | None = None,
               title: str = "Interactive Lesion Segmentation in PET/CT and Longitudinal CT",
               team: str = "Our team", authors: str | None = None,
               institute: str = "Institute") -> dict[str, Path]:
    """Write ``results.tex``, ``method_facts.tex`` and the figure copies into ``output_dir``.

    ``task1_dir``/``task2_dir`` hold an ``evaluation_metrics`` ``summary.json`` (and its curve PNG).
    Run logs default to ``<task dir>/run_log.json`` when that file exists. Everything is read
    and checked first; nothing is written when any input is bad (raises :class:`PaperInputError`).
    Output paths must not lie inside the template folder, so the template is never edited.
    Returns the written paths by name ("results", "method_facts", "figure_task1", ...).
    """
    from autopet_common.output_folder import check_output_folder

    output_dir = check_output_folder(Path(output_dir).resolve(), "paper output folder")
    if output_dir == TEMPLATE_DIR:
        raise PaperInputError(f"output folder {output_dir} is the template folder itself; choose another "
                              f"(e.g. publication_template/build/paper) so the template is never edited")
    tasks = [load_summary(task1_dir, 1)]
    logs = {1: task1_run_log if task1_run_log is not None else find_run_log(Path(task1_dir))}
    if task2_dir is not None:
        tasks.append(load_summary(task2_dir, 2))
        logs[2] = task2_run_log if task2_run_log is not None else find_run_log(Path(task2_dir))
    elif task2_run_log is not None:
        raise PaperInputError(f"Task 2 run log {task2_run_log} given without a Task 2 summary folder (--task2)")
    facts = {task: load_run_log(path, task) for task, path in logs.items()}

    figure_paths = {t.task: (f"figures/{FIGURE_NAME[t.task]}" if t.plot else None) for t in tasks}
    results_tex = render_results_tex(tasks, figure_paths)
    facts_tex = render_method_facts_tex(title, team, authors if authors is not None else f"Team {team}",
                                        institute, tasks, facts)

    written: dict[str, Path] = {}
    for t in tasks:
        if t.plot is not None:
            target = output_dir / figure_paths[t.task]
            _atomic_copy(t.plot, target)
            written[f"figure_task{t.task}"] = target
    written["method_facts"] = atomic_write_text(output_dir / "method_facts.tex", facts_tex)
    written["results"] = atomic_write_text(output_dir / "results.tex", results_tex)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="fill_paper.py",
        description="Fill the challenge short paper (publication_template/paper.tex) from this "
                    "repository's results: writes OUTDIR/results.tex (six leaderboard measures per "
                    "task), OUTDIR/method_facts.tex (macros: trainer, folds, encoding, seconds per "
                    "run, ...) and copies the Dice-versus-clicks PNG(s) to OUTDIR/figures/. The "
                    "template itself is never edited. Build the PDF afterwards with "
                    "publication_template/build_paper.sh OUTDIR.")
    parser.add_argument("--task1", required=True, metavar="DIR",
                        help="folder with evaluation_metrics' summary.json (mode 'interactive') and its curve PNG")
    parser.add_argument("--task2", metavar="DIR",
                        help="folder with the Task 2 summary.json (mode 'task2'); omit if you did not take part")
    parser.add_argument("--task1_run_log", metavar="FILE",
                        help="local challenge run_log.json for Task 1 (default: DIR/run_log.json if present)")
    parser.add_argument("--task2_run_log", metavar="FILE",
                        help="local challenge run_log.json for Task 2 (default: DIR/run_log.json if present)")
    parser.add_argument("--title", default="Interactive Lesion Segmentation in PET/CT and Longitudinal CT",
                        help="paper title")
    parser.add_argument("--team", default="Our team", help="team name as on the leaderboard")
    parser.add_argument("--authors", help="authors separated by semicolons, e.g. 'Ann One; Bob Two' "
                                          "(default: 'Team <team>')")
    parser.add_argument("--institute", default="Institute", help="affiliation line")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="folder for results.tex, method_facts.tex and figures/ (created if needed)")
    return parser


@entrypoint("python -m publication_template.fill_paper")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written = fill_paper(args.task1, args.output, task2_dir=args.task2,
                         task1_run_log=args.task1_run_log, task2_run_log=args.task2_run_log,
                         title=args.title, team=args.team, authors=args.authors,
                         institute=args.institute)
    for name, path in written.items():
        print(f"wrote {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
