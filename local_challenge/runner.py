"""Run the Task 1 interactive protocol locally, exactly as Grand Challenge runs a submission.

For every case of a cohort (nnU-Net raw layout: ``imagesTr/<case>_0000`` CT,
``imagesTr/<case>_0001`` PET, ``labelsTr/<case>``) the runner

1. simulates the case's 10 tumor + 10 background clicks with :func:`clicks.simulate_clicks`
   (the challenge's published algorithm, seeded, so the same clicks every time);
2. writes a Grand Challenge input folder (``images/ct/<uuid>.mha``, ``images/pet/<uuid>.mha``)
   with ``inputs.json`` (the job's socket values, in the platform's shape of today) and, for each
   step s = 0..10, ``lesion-clicks.json`` with the first s tumor and s background clicks
   ("Multiple points" format; step 0 has no points);
3. runs the entrypoint (``inference.py``) once per step as a separate process -- or
   ``docker run`` with the challenge's flags when a Docker image is given -- and records its
   wall time, peak memory (``os.wait4`` rusage of that child) and exit code, killing it at the
   timeout and flagging runs over the time budget;
4. checks that exactly one mask came out, on the input grid, and copies it to
   ``predictions/<case>_pred<s>.mha`` (a failed run counts as an empty mask, and is reported);
5. scores all steps with :func:`evaluation_metrics.evaluate_folder` (CSV, summary, curve PNG)
   and writes ``run_log.json`` and ``runs.csv`` beside them.

Arrays are ``[i, j, k]`` (NIfTI order) throughout; click points are voxel indices in that order.
"""
from __future__ import annotations

import csv
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from autopet_common.errors import InputError
from local_challenge.process import run_process  # noqa: F401  (one run, timed and measured; re-exported)
from autopet_common.contract import (TASK1_CLICKS_FILE, TASK1_CT_SUBDIR, TASK1_N_STEPS, TASK1_OUTPUT_SUBDIR,
                                     TASK1_PET_SUBDIR, TIME_BUDGET_SECONDS)

log = logging.getLogger("local_challenge")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENTRYPOINT = REPO_ROOT / "inference.py"
N_STEPS = TASK1_N_STEPS  # steps 0..10
REPORT_NAME = "run_report.json"  # the entrypoint's report (--report / $AUTOPET_REPORT) in each run's output
DOCKER_FLAGS = ("--network", "none", "--cap-drop", "ALL", "--shm-size", "2g", "--gpus", "all")


@dataclass(frozen=True)
class CohortCase:
    """One case of a raw-layout cohort: its id and image / label paths."""

    case_id: str
    ct_path: Path
    pet_path: Path
    label_path: Path
    dataset_name: str = "FDG-PETCT"


@dataclass
class RunRecord:
    """One run of the entrypoint (one case, one step)."""

    case: str
    step: int
    seconds: float
    peak_memory_mb: float | None
    exit_code: int
    over_budget: bool
    timed_out: bool = False
    output_ok: bool = True
    problem: str = ""
    resumed: bool = False  # finished by an earlier run into the same output folder, not run again


@dataclass
class LocalChallengeResult:
    output_dir: Path
    runs: list[RunRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    run_log: dict[str, Any] = field(default_factory=dict)
    last_report: Any = None  # in process: the method's report of its last prediction
    run_log_extra: dict[str, Any] = field(default_factory=dict)  # e.g. the cluster's retries


# ----------------------------------------------------------------------------- cohort

def discover_cohort(cohort_dir: str | os.PathLike, dataset_name: str = "FDG-PETCT") -> list[CohortCase]:
    """Cases of an nnU-Net raw cohort (imagesTr + labelsTr, or imagesTs + labelsTs), sorted by id.

    ``dataset_name``: the click simulator's dataset name for every case ("FDG-PETCT" or
    "PSMA-FDG-PETCT": both give 10 tumor + 10 background clicks).
    Raises :class:`autopet_common.errors.InputError` for a missing folder, a case without PET
    or without label.
    """
    from autopet_common.raw_layout import raw_cohort

    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        raise InputError(f"cohort folder not found: {cohort_dir}")
    found = raw_cohort(cohort_dir)
    if found is None:
        raise InputError(f"{cohort_dir} is not an nnU-Net raw cohort: no imagesTr/ (or imagesTs/) folder")
    images, labels, raw_cases = found
    if not labels.is_dir():
        raise InputError(f"{cohort_dir}: {labels.name}/ not found; the local challenge needs labels to score")
    cases = []
    for raw in raw_cases:
        if raw.label_path is None:
            raise InputError(f"case {raw.case_id}: label {labels / raw.case_id}.* not found")
        cases.append(CohortCase(raw.case_id, raw.ct_path, raw.pet_path, raw.label_path, dataset_name))
    if not cases:
        raise InputError(f"no cases (<case>_0000 CT images) in {images}")
    return cases


def case_uuid(case_id: str, modality: str) -> str:
    """Deterministic uuid for a case's image, as Grand Challenge names its input files."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"autopet-ct-iv-local-challenge/{case_id}/{modality}"))


# ----------------------------------------------------------------------------- running one step

def entrypoint_flags(model: str | None, time_budget: float, extra_args: Sequence[str] = ()) -> list[str]:
    """The entrypoint's flags after ``--input`` and ``--output``: the time budget, the model, the rest."""
    return ["--time_budget", f"{time_budget:g}", *(["--model", str(model)] if model else []), *extra_args]


def entrypoint_command(input_dir: Path, output_dir: Path, entrypoint: Path, model: str | None,
                       time_budget: float, extra_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, str(entrypoint), "--input", str(input_dir), "--output", str(output_dir),
            *entrypoint_flags(model, time_budget, extra_args)]


def docker_command(input_dir: Path, output_dir: Path, image: str) -> list[str]:
    return ["docker", "run", "--rm", *DOCKER_FLAGS, "-e", f"AUTOPET_REPORT=/output/{REPORT_NAME}",
            "-v", f"{input_dir.resolve()}:/input:ro", "-v", f"{output_dir.resolve()}:/output", image]


def check_docker() -> None:
    """Raise a clear error when no Docker engine answers."""
    from autopet_common.errors import InputError

    if shutil.which("docker") is None:
        raise InputError("--docker given but the docker command is not installed")
    probe = subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if probe.returncode != 0:
        raise InputError(f"--docker given but no Docker engine answers: {probe.stderr.strip()[:300]}")


def collect_mask(output_dir: Path, expected_name: str, geometry: Any) -> tuple[Path | None, str]:
    """The single mask a run wrote, checked against the contract; ``(path, "")`` or ``(None, why)``."""
    import numpy as np
    from autopet_common.errors import InputError
    from autopet_common.image_io import list_images, read_image, same_grid

    folder = output_dir / TASK1_OUTPUT_SUBDIR
    if not folder.is_dir():
        return None, f"no {TASK1_OUTPUT_SUBDIR} folder in the output"
    files = list_images(folder)
    if len(files) != 1:
        return None, f"expected exactly one mask in {TASK1_OUTPUT_SUBDIR}, found {len(files)}"
    if files[0].name != expected_name:
        return None, f"mask named {files[0].name}, expected {expected_name} (the CT uuid)"
    try:
        mask, mask_geometry = read_image(files[0], what="predicted mask")
    except InputError as exc:
        return None, str(exc)
    if not same_grid(mask_geometry, geometry):
        return None, "mask is not on the input grid (shape, spacing, origin or direction differ)"
    if not np.isin(np.unique(mask), (0, 1)).all():
        return None, f"mask is not binary: values {np.unique(mask)[:10].tolist()}"
    return files[0], ""


# ----------------------------------------------------------------------------- the whole run

def check_model_argument(model: str | os.PathLike | None) -> None:
    """Fail before the first run, not once per run, when ``--model`` names no folder."""
    if model is None or str(model) == "model-free":
        return
    if not Path(model).is_dir():
        raise InputError(f"model folder not found: {model} (give a trained nnU-Net folder or 'model-free')")


def _clicks_from_folder(folder: Path) -> Callable[..., dict]:
    """A stand-in for the click simulator that reads ``folder/<case>.json`` (InputError when missing)."""
    from autopet_common.click_io import read_clicks_json

    if not folder.is_dir():
        raise InputError(f"--clicks folder not found: {folder}")

    def read(label, pet, *, dataset_name=None, case="case"):
        path = folder / f"{case}.json"
        if not path.is_file():
            raise InputError(f"case {case}: no clicks file {path} in --clicks {folder}")
        return read_clicks_json(path, missing_ok=False)

    return read


def run_local_challenge(cohort_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                        model: str | None = None, docker_image: str | None = None,
                        entrypoint: str | os.PathLike = DEFAULT_ENTRYPOINT,
                        time_budget: float = TIME_BUDGET_SECONDS, timeout: float | None = None,
                        dataset_name: str = "FDG-PETCT", max_cases: int | None = None,
                        n_steps: int = N_STEPS, entrypoint_args: Sequence[str] = (),
                        keep_work: bool = False, progress: bool = True,
                        simulate: Callable[..., dict] | None = None,
                        overlays: bool = True, in_process: bool = False, sandbox: bool = False,
                        overwrite: bool = False, clicks_dir: str | os.PathLike | None = None,
                        cluster: str | None = None) -> LocalChallengeResult:
    """Run the Task 1 protocol on a cohort and score it. See the module docstring.

    ``model``: passed to the entrypoint's ``--model`` (None: its default; "model-free").
    ``docker_image``: run ``docker run <flags> IMAGE`` instead of the entrypoint script.
    ``overlays``: write ``overlays/<case>.png`` (PET MIP with truth, first and last step's
    prediction and clicks; see :mod:`local_challenge.overlay`).
    ``timeout``: seconds after which a run is killed (default: the time budget, as on Grand
    Challenge). ``n_steps``: steps 0..n_steps-1 (11 in the challenge; scoring needs >= 2).
    ``in_process``: for fast development loops, no process per step: the entrypoint's model
    (same default resolution) is loaded once in this process, each case is preprocessed once and
    only the click channels and forward passes run per step (:mod:`Task1.batch_predict`; the
    masks equal the per-process runs'). Per-run seconds are then the case's time divided by
    its steps, and memory is this process's peak.
    ``sandbox``: each run in the platform's runtime without Docker (:mod:`local_challenge.sandbox`:
    no network, read-only input, model and root file system, uid 65534, fresh /tmp).
    Resuming (:mod:`autopet_common.resume`): a rerun into the same ``output_dir`` with the same
    configuration, code and model does not repeat a run (case, step) whose prediction and log are
    intact and whose case inputs and clicks are unchanged; its record says ``resumed``.
    ``overwrite``: run everything again. In-process runs always run again.
    ``cluster``: a Ray address (or "local") to run each (case, step) on a Ray cluster
    (:mod:`local_challenge.cluster`): the same entrypoint, flags, budget and outputs, written by
    this process; resumable the same way.
    ``clicks_dir``: each case's clicks from ``clicks_dir/<case>.json`` (the challenge's format, e.g.
    a person's clicks saved by the viewer) instead of the simulated ones; step s takes the first s
    of each kind, as with simulated clicks.
    Returns the runs, the metrics summary and the run log; writes everything under ``output_dir``.
    """
    import numpy as np
    from tqdm import tqdm
    from autopet_common.click_io import clicks_at_step, write_clicks_json
    from autopet_common.image_io import (atomic_copy, atomic_write_json, check_same_grid, read_image, write_image,
                                         write_mask)
    from autopet_common.socket_values import write_inputs_json

    if clicks_dir is not None:
        simulate = _clicks_from_folder(Path(clicks_dir))
    if simulate is None:
        from clicks import simulate_clicks as simulate
    if docker_image:
        check_docker()
    audit_dir = None
    if sandbox:
        from .sandbox import sandbox_unavailable_reason, write_audit_hook

        reason = sandbox_unavailable_reason()
        if reason:
            raise InputError(f"--sandbox is not available on this machine: {reason}")
        if docker_image or in_process:
            raise InputError("--sandbox runs the entrypoint script; it does not combine with --docker or --in_process")
        audit_dir = write_audit_hook(Path(output_dir) / "logs" / "sandbox_audit")
    check_model_argument(model)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"output folder {output_dir} is a file, not a folder")
    timeout = float(timeout if timeout is not None else time_budget)
    cases = discover_cohort(cohort_dir, dataset_name)
    if max_cases:
        cases = cases[:max_cases]
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    steps = list(range(n_steps))
    gt_dir, pred_dir = output_dir / "labels", output_dir / "predictions"
    clicks_dir, logs_dir, work_dir = output_dir / "clicks", output_dir / "logs", output_dir / "work"
    for folder in (gt_dir, pred_dir, clicks_dir, logs_dir):
        folder.mkdir(parents=True, exist_ok=True)

    from autopet_common.resume import Ledger, code_fingerprint, files_fingerprint, folder_fingerprint

    ledger = None if in_process else Ledger(output_dir, {
        "tool": "local_challenge", "model": None if model is None else str(model),
        "model_files": folder_fingerprint(model) if model not in (None, "model-free") else None,
        "code": code_fingerprint(entrypoint), "entrypoint_args": list(entrypoint_args),
        "docker_image": docker_image, "sandbox": sandbox, "time_budget": time_budget, "timeout": timeout,
        "dataset_name": dataset_name}, overwrite=overwrite)
    result = LocalChallengeResult(output_dir)
    method = None
    runner = None
    if cluster is not None:
        if docker_image or in_process or sandbox:
            raise InputError("--cluster runs the entrypoint script on Ray workers; it does not combine with "
                             "--docker, --in_process or --sandbox")
        from autopet_common.ray_cluster import RayRunner

        runner = RayRunner(cluster)
    if in_process:
        if docker_image:
            raise ValueError("in_process and docker_image exclude each other")
        method = load_in_process_method(model, entrypoint_args)
        model = model or method.name
    bar = tqdm(total=len(cases) * len(steps), desc="local challenge", unit="run", disable=not progress)
    if runner is not None:
        bar.write(f"local challenge on the Ray cluster {cluster}: {runner.describe()}")

    def finish(job: dict, seconds: float, peak_mb: float | None, exit_code: int, timed_out: bool,
               problem: str = "") -> None:
        """A run's outputs into the output folder, its record, the ledger (local and cluster runs)."""
        case_id, step, geometry, run_output, log_path = (job["case"], job["step"], job["geometry"], job["run_output"],
                                                         job["log_path"])
        if docker_image:
            peak_mb = None  # the docker client's memory says nothing about the container
        record = RunRecord(case_id, step, round(seconds, 3), None if peak_mb is None else round(peak_mb, 1), exit_code,
                           over_budget=timed_out or seconds > time_budget, timed_out=timed_out)
        mask_path, found = (None, problem or f"exit code {exit_code}") if exit_code != 0 or problem else \
            collect_mask(run_output, job["mask_name"], geometry)
        if timed_out:
            found = f"killed after {timeout:g} s"
        target = pred_dir / f"{case_id}_pred{step}.mha"
        if mask_path is None:
            record.output_ok, record.problem = False, found
            write_mask(np.zeros(geometry.shape, np.uint8), geometry, target)  # scored as empty
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:] if log_path.is_file() else []
            tqdm.write(f"run {case_id} step {step} failed: {found}; log {log_path}: " + " | ".join(tail),
                       file=sys.stderr)
            ledger.forget(f"{case_id}_step{step}")
        else:
            atomic_copy(mask_path, target)
            report_path = logs_dir / f"{case_id}_step{step}.report.json"
            if (run_output / REPORT_NAME).is_file():
                atomic_copy(run_output / REPORT_NAME, report_path)
            ledger.record(f"{case_id}_step{step}", [p for p in (target, log_path, report_path) if p.is_file()],
                          {"inputs": job["inputs"], "clicks": job["clicks"], "run": asdict(record)})
        result.runs.append(record)
        if runner is not None:
            bar.set_postfix_str(runner.progress())
        else:
            bar.set_postfix_str(f"{case_id} step {step}: {seconds:.1f} s")
        bar.update(1)

    def finish_remote(job: dict, remote, problem: str) -> None:
        """A cluster run's log and output files written here, then :func:`finish`."""
        from autopet_common.image_io import atomic_write_bytes

        run_output = job["run_output"]
        shutil.rmtree(run_output, ignore_errors=True)
        run_output.mkdir(parents=True)
        if remote is None:
            atomic_write_bytes(job["log_path"], f"{problem}\n".encode())
            finish(job, 0.0, None, -1, False, problem)
            return
        for relative, data in remote.files.items():
            path = run_output / relative
            if run_output.resolve() not in path.resolve().parents:
                continue  # a name that leaves the run's folder: not written
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        atomic_write_bytes(job["log_path"], remote.log)
        finish(job, remote.seconds, remote.peak_mb, remote.exit_code, remote.timed_out)
    deferred_overlays: list = []
    for case in cases:
        ct, ct_geometry = read_image(case.ct_path, np.float32, check_finite=True, what=f"case {case.case_id} CT")
        pet, geometry = read_image(case.pet_path, np.float32, check_finite=True, what=f"case {case.case_id} PET")
        label, label_geometry = read_image(case.label_path, what=f"case {case.case_id} label")
        check_same_grid(label_geometry, geometry, f"label {case.label_path}", f"PET {case.pet_path}")
        label = (label > 0).astype(np.uint8)
        write_mask(label, geometry, gt_dir / f"{case.case_id}.nii.gz")
        case_clicks = simulate(label, pet, dataset_name=case.dataset_name, case=case.case_id)
        write_clicks_json(clicks_dir / f"{case.case_id}.json", case_clicks)
        if method is not None:
            run_case_in_process(method, case.case_id, ct, pet, geometry, case_clicks, steps, pred_dir, result,
                                time_budget, bar)
            if overlays:
                write_case_overlay(case.case_id, pet, label, geometry, case_clicks, pred_dir,
                                   sorted({steps[0], steps[-1]}), output_dir / "overlays")
            continue

        ct_uuid, pet_uuid = case_uuid(case.case_id, "ct"), case_uuid(case.case_id, "pet")
        input_dir = work_dir / case.case_id / "input"
        case_inputs = files_fingerprint([case.ct_path, case.pet_path, case.label_path])
        finished = {step: ledger.finished(f"{case.case_id}_step{step}",
                                          {"inputs": case_inputs, "clicks": clicks_at_step(case_clicks, step)})
                    for step in steps}
        if not all(finished.values()):
            write_image(ct, ct_geometry, input_dir / TASK1_CT_SUBDIR / f"{ct_uuid}.mha")
            write_image(pet, geometry, input_dir / TASK1_PET_SUBDIR / f"{pet_uuid}.mha")
        del ct

        for step in steps:
            if finished[step]:  # an earlier run into this folder did it, and its outputs are intact
                record = RunRecord(**{k: v for k, v in finished[step]["run"].items()
                                      if k in RunRecord.__dataclass_fields__})
                record.resumed = True
                result.runs.append(record)
                bar.set_postfix_str(f"{case.case_id} step {step}: resumed")
                bar.update(1)
                continue
            clicks_path = input_dir / TASK1_CLICKS_FILE
            write_clicks_json(clicks_path, clicks_at_step(case_clicks, step), gc_format=True)
            if step == steps[0]:  # as the platform gives a job: its socket values, in today's shape
                write_inputs_json(input_dir)
            run_output = work_dir / case.case_id / f"output_step{step}"
            log_path = logs_dir / f"{case.case_id}_step{step}.log"
            job = {"case": case.case_id, "step": step, "geometry": geometry, "run_output": run_output,
                   "log_path": log_path, "mask_name": f"{ct_uuid}.mha", "inputs": case_inputs,
                   "clicks": clicks_at_step(case_clicks, step)}
            if runner is not None:  # the input folder's files travel with the task; the case's images once
                files = {}
                for path in sorted(p for p in input_dir.rglob("*") if p.is_file()):
                    relative = str(path.relative_to(input_dir))
                    shared = path.suffix == ".mha"
                    files[relative] = runner.share(f"{case.case_id}/{relative}", path.read_bytes) if shared \
                        else path.read_bytes()
                from .cluster import OUTPUT_PLACEHOLDER, run_entrypoint_job

                flags = entrypoint_flags(model, time_budget, ["--report", f"{OUTPUT_PLACEHOLDER}/{REPORT_NAME}",
                                                              *entrypoint_args])
                runner.submit(run_entrypoint_job, job, f"{case.case_id}_step{step}", files, flags, timeout,
                              str(Path(entrypoint).resolve()))
                runner.collect(finish_remote, block=False)
                continue
            shutil.rmtree(run_output, ignore_errors=True)
            run_output.mkdir(parents=True)
            if docker_image:
                os.chmod(run_output, 0o777)  # the container's non-root user writes here
                command = docker_command(input_dir, run_output, docker_image)
            elif sandbox:
                from .sandbox import OUTPUT_MOUNT, sandboxed_command

                os.chmod(run_output, 0o777)  # the sandbox's uid 65534 writes here
                model_dir = Path(model) if model not in (None, "model-free") else None
                extra = ["--time_budget", f"{time_budget:g}", *(["--model", "model-free"] if model == "model-free" else []),
                         "--report", f"{OUTPUT_MOUNT}/{REPORT_NAME}", *entrypoint_args]
                command = sandboxed_command(input_dir, run_output, model_dir, extra, audit_dir=audit_dir,
                                            app_dir=Path(entrypoint).resolve().parent)
            else:
                command = entrypoint_command(input_dir, run_output, Path(entrypoint), model, time_budget,
                                             ["--report", str(run_output / REPORT_NAME), *entrypoint_args])
            partial_log = log_path.with_name(f".{log_path.name}.part")  # renamed when the run ends
            seconds, peak_mb, exit_code, timed_out = run_process(command, partial_log, timeout)
            os.replace(partial_log, log_path)
            finish(job, seconds, peak_mb, exit_code, timed_out)
        if runner is not None:  # its runs may still be running: the overlay when all are back
            runner.release(f"{case.case_id}/")  # its images leave the object store with its last run
            deferred_overlays.append((case, case_clicks))
        elif overlays:
            write_case_overlay(case.case_id, pet, label, geometry, case_clicks, pred_dir,
                               sorted({steps[0], steps[-1]}), output_dir / "overlays")
        del pet, label
        if not keep_work and runner is None:
            shutil.rmtree(work_dir / case.case_id, ignore_errors=True)
    if runner is not None:
        runner.collect(finish_remote, block=True)
        result.run_log_extra = {"cluster": runner.summary()}
        for case, case_clicks in deferred_overlays if overlays else []:
            pet, geometry = read_image(case.pet_path, np.float32, what=f"case {case.case_id} PET")
            label = (read_image(case.label_path, what=f"case {case.case_id} label")[0] > 0).astype(np.uint8)
            write_case_overlay(case.case_id, pet, label, geometry, case_clicks, pred_dir,
                               sorted({steps[0], steps[-1]}), output_dir / "overlays")
    bar.close()
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)

    _write_runs_csv(output_dir / "runs.csv", result.runs)
    report_paths = [logs_dir / f"{r.case}_step{r.step}.report.json" for r in result.runs if r.output_ok]
    result.run_log = build_run_log(result.runs, model, docker_image, time_budget, report_paths)
    result.run_log["mode"] = "in-process" if in_process else ("docker" if docker_image else
                                                              ("Ray cluster" if runner else "process per step"))
    result.run_log.update(result.run_log_extra)
    if method is not None and result.last_report is not None:  # in process: the method's own report
        result.run_log.update(result.last_report.model_fields())
    atomic_write_json(output_dir / "run_log.json", result.run_log)
    result.summary = score(gt_dir, pred_dir, output_dir, steps, progress)
    return result


def load_in_process_method(model: str | None, entrypoint_args: Sequence[str] = ()):
    """The Task 1 method the entrypoint would run, opened once in this process through the one road
    (:mod:`Task1.session`): the same model resolution and the same flags (``entrypoint_args``
    read with the entrypoint's own method flags, :func:`Task1.session.add_method_arguments`)."""
    from autopet_common.cli import ArgumentParser
    from Task1.session import add_method_arguments, method_options, open_method, resolve_task1_model

    parser = ArgumentParser(prog="local_challenge --in_process (the entrypoint's method flags)")
    parser.add_argument("--model", default=None)
    add_method_arguments(parser)
    args, unknown = parser.parse_known_args((["--model", str(model)] if model else []) + list(entrypoint_args))
    if unknown:
        log.warning("--in_process: entrypoint flags %s do not change the method; ignored", unknown)
    return open_method(resolve_task1_model(args.model), **method_options(args))


def run_case_in_process(method, case_id: str, ct, pet, geometry, case_clicks: dict, steps: Sequence[int],
                        pred_dir: Path, result: LocalChallengeResult, time_budget: float, bar) -> None:
    """All steps of one case with an opened method (prepared once); masks to ``pred_dir/<case>_pred<s>.mha``."""
    import resource

    from autopet_common.image_io import write_mask
    from Task1.session import predict_steps

    started = time.perf_counter()
    results = predict_steps(method, method.prepare(ct, pet, geometry), case_clicks, steps)
    seconds = (time.perf_counter() - started) / len(steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for step in steps:
        mask, result.last_report = results[step]
        write_mask(mask, geometry, pred_dir / f"{case_id}_pred{step}.mha")
        result.runs.append(RunRecord(case_id, step, round(seconds, 3), round(peak, 1), 0,
                                     over_budget=seconds > time_budget))
        bar.update(1)
    bar.set_postfix_str(f"{case_id}: {seconds:.1f} s per step (in process)")


def write_case_overlay(case_id: str, pet, label, geometry, case_clicks: dict, pred_dir: Path,
                       steps: Sequence[int], overlay_dir: Path) -> Path:
    """``overlay_dir/<case>.png``: the case's PET MIP with truth, clicks and the predictions of
    ``steps`` (read back from ``pred_dir``, exactly what was scored)."""
    from autopet_common.image_io import read_image
    from local_challenge.overlay import plot_case_overlay

    predictions = {s: read_image(pred_dir / f"{case_id}_pred{s}.mha")[0] for s in steps}
    return plot_case_overlay(pet, label, predictions, case_clicks, geometry.spacing,
                             overlay_dir / f"{case_id}.png", title=case_id)


def score(gt_dir: Path, pred_dir: Path, output_dir: Path, steps: Sequence[int],
          progress: bool = True) -> dict[str, Any]:
    from evaluation_metrics import evaluate_folder

    if len(steps) < 2:  # an interactive curve needs two points at least
        print("note: fewer than 2 steps: predictions written, not scored", file=sys.stderr)
        return {}
    return evaluate_folder(gt_dir, pred_dir, output_dir, n_clicks=len(steps), plot=True, progress=progress)


def _write_runs_csv(path: Path, runs: Sequence[RunRecord]) -> None:
    from autopet_common.image_io import atomic_write_text
    import io

    buffer = io.StringIO()
    fields = list(asdict(runs[0]).keys()) if runs else [f for f in RunRecord.__dataclass_fields__]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow(asdict(run))
    atomic_write_text(path, buffer.getvalue())


def describe_model_from_reports(report_paths: Sequence[Path], model: str | None) -> dict[str, Any]:
    """What the entrypoint actually ran, read from its run reports (``--report``, written by
    :func:`Task1.session.write_report`; never from log lines): the model, the trainer, plans,
    configuration, folds, encoding and device (a recipe's networks joined with " + "). Falls back
    to ``model`` as given when no report says."""
    from Task1.session import MODEL_FIELDS, read_report_model_fields

    for path in report_paths:
        fields = read_report_model_fields(path)
        if fields is not None:
            return {"model": fields.get("model"), **{k: fields.get(k) for k in MODEL_FIELDS},
                    "device": fields.get("device") or "unknown", **({"recipe": fields["recipe"]} if "recipe" in fields
                                                                   else {})}
    return {"model": str(model) if model else "unknown", **{k: None for k in MODEL_FIELDS}, "device": "unknown"}


def build_run_log(runs: Sequence[RunRecord], model: str | None, docker_image: str | None,
                  time_budget: float, report_paths: Sequence[Path] = ()) -> dict[str, Any]:
    """The ``run_log.json`` the publication template reads (see local_challenge/README.md)."""
    seconds = [r.seconds for r in runs]
    memory = [r.peak_memory_mb for r in runs if r.peak_memory_mb is not None]
    info = describe_model_from_reports(report_paths, model)
    return {
        "task": 1,
        **info,
        "docker_image": docker_image,
        "n_runs": len(runs),
        "median_seconds_per_run": round(statistics.median(seconds), 3) if seconds else None,
        "max_seconds_per_run": round(max(seconds), 3) if seconds else None,
        "max_peak_memory_mb": round(max(memory), 1) if memory else None,
        "n_over_budget": sum(r.over_budget for r in runs),
        "n_failed": sum(not r.output_ok for r in runs),
        "n_resumed": sum(r.resumed for r in runs),
        "time_budget_seconds": float(time_budget),
        "runs": [{"case": r.case, "step": r.step, "seconds": r.seconds, "peak_memory_mb": r.peak_memory_mb,
                  "exit_code": r.exit_code, "over_budget": r.over_budget, "resumed": r.resumed} for r in runs],
    }


# ----------------------------------------------------------------------------- reporting

def _fmt_number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if value != value else f"{value:.{digits}f}"


def format_report(result: LocalChallengeResult) -> str:
    """Markdown summary of a local challenge run: leaderboard measures and run-time budget."""
    log, summary = result.run_log, result.summary
    means = summary.get("means", {})
    last = (summary.get("steps") or [N_STEPS - 1])[-1]
    lines = [
        f"Local challenge: {summary.get('n_cases', 0)} case(s), {log.get('n_runs', 0)} run(s), "
        f"model {log.get('model')}",
        "",
        f"| DSC@{last} | FPV@{last} (ml) | FNV@{last} (ml) | AUC-DSC | AUC-FPV | AUC-FNV |",
        "|---|---|---|---|---|---|",
        "| " + " | ".join(_fmt_number(means.get(k)) for k in
                         ("dice_final", "fpv_final", "fnv_final", "dice_auc", "fpv_auc", "fnv_auc")) + " |",
        "",
        "Mean Dice per step: " + ", ".join(_fmt_number(v) for v in summary.get("per_step_means", {}).get("dice", [])),
        "",
        f"Run time: median {_fmt_number(log.get('median_seconds_per_run'), 2)} s, max "
        f"{_fmt_number(log.get('max_seconds_per_run'), 2)} s per run (budget "
        f"{_fmt_number(log.get('time_budget_seconds'), 0)} s); peak memory "
        f"{_fmt_number(log.get('max_peak_memory_mb'), 0)} MB; over budget: {log.get('n_over_budget', 0)}; "
        f"failed: {log.get('n_failed', 0)}"
        + (f"; resumed: {log['n_resumed']} (finished by an earlier run into this folder, not run again; "
           "--overwrite redoes them)" if log.get("n_resumed") else ""),
        f"Results in {result.output_dir}: summary.json, metrics_interactive.csv, metrics_per_step.csv, "
        f"{summary.get('plot') or 'no plot'}, run_log.json, runs.csv"
        + (", overlays/<case>.png" if (result.output_dir / "overlays").is_dir() else ""),
    ]
    return "\n".join(lines)


def write_mixed_phantom_cohort(out_dir: str | os.PathLike, n_cases: int, size: str = "small",
                               seed: int = 0, progress: bool = True) -> Path:
    """A raw-layout phantom cohort of ``n_cases`` (FDG and PSMA alternating) in ``out_dir``.

    Case ids carry the tracer (``PHANTOM_FDG_0000``, ``PHANTOM_PSMA_0001``, ...). Deterministic
    for a given ``seed``.
    """
    from autopet_common.phantoms import write_task1_cohort

    return write_task1_cohort(out_dir, n_cases=n_cases, tracer="mixed", size=size, seed=seed,
                              gc_layout=False, progress=progress)
