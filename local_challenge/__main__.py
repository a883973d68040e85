"""CLI: ``python -m local_challenge --cohort DIR --output DIR [options]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from autopet_common.cli import ArgumentParser, entrypoint, positive_float, positive_int, seed
from autopet_common.contract import TIME_BUDGET_SECONDS
from autopet_common.errors import InputError

from .runner import DEFAULT_ENTRYPOINT, N_STEPS

PROG = "python -m local_challenge"


def _steps(text: str) -> int:
    value = positive_int(text)
    if value > N_STEPS:
        raise argparse.ArgumentTypeError(f"expected 1..{N_STEPS} steps (the protocol has steps 0..{N_STEPS - 1}), "
                                         f"got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Run the autoPET/CT IV Task 1 interactive protocol locally: for each case of a "
                    "cohort (nnU-Net raw layout with labels), simulate the challenge's 10 tumor + 10 "
                    "background clicks, run the entrypoint once per step 0..10 as a separate process "
                    "with Grand Challenge inputs (or `docker run` with the challenge's flags), record "
                    "wall time and peak memory per run, flag runs over the time budget, and score "
                    "the predictions (Dice, FPV, FNV per step, AUCs, curve PNG).",
        epilog="Writes to OUTPUT: metrics (from evaluation_metrics: metrics_interactive.csv, "
               "metrics_per_step.csv, summary.json, curve PNG), run_log.json, runs.csv, clicks/<case>.json, "
               "labels/, predictions/<case>_pred<s>.mha and logs/<case>_step<s>.log.")
    parser.add_argument("--cohort", type=Path,
                        help="nnU-Net raw cohort: imagesTr/<case>_0000 (CT), _0001 (PET), labelsTr/<case>")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    parser.add_argument("--task", type=int, default=1, choices=[1, 2],
                        help="1: PET/CT (default); 2: longitudinal CT via local_challenge.task2")
    parser.add_argument("--model", default=None,
                        help="passed to the entrypoint's --model: a trained nnU-Net folder or 'model-free' "
                             "(default: the entrypoint's own default)")
    parser.add_argument("--docker", metavar="IMAGE", default=None,
                        help="run this Docker image with --network none --cap-drop ALL --shm-size 2g "
                             "--gpus all instead of the entrypoint script (needs a Docker engine)")
    parser.add_argument("--entrypoint", type=Path, default=DEFAULT_ENTRYPOINT,
                        help="entrypoint script (default: the repository's inference.py)")
    parser.add_argument("--time_budget", type=positive_float, default=TIME_BUDGET_SECONDS,
                        help="seconds allowed per run, as on Grand Challenge (default 300)")
    parser.add_argument("--timeout", type=positive_float, default=None,
                        help="kill a run after this many seconds (default: the time budget)")
    parser.add_argument("--dataset_name", default="FDG-PETCT", choices=["FDG-PETCT", "PSMA-FDG-PETCT"],
                        help="dataset name for the click simulation (both give 10 tumor + 10 background "
                             "clicks; default FDG-PETCT)")
    parser.add_argument("--max_cases", type=positive_int, default=None, help="only the first N cases (sorted by id)")
    parser.add_argument("--steps", type=_steps, default=N_STEPS,
                        help=f"number of steps 0..N-1 (default {N_STEPS}, the challenge's protocol)")
    parser.add_argument("--make_phantoms", type=positive_int, default=None, metavar="N",
                        help="first write a phantom cohort of N cases (Task 1: half FDG, half PSMA; Task 2: "
                             "longitudinal pairs) to OUTPUT/cohort and run on it (ignores --cohort)")
    parser.add_argument("--phantom_size", default="small", choices=["tiny", "small", "medium", "full"],
                        help="phantom size for --make_phantoms (default small)")
    parser.add_argument("--seed", type=seed, default=0, help="phantom seed for --make_phantoms (default 0)")
    parser.add_argument("--keep_work", action="store_true",
                        help="keep the per-step Grand Challenge input/output folders under OUTPUT/work")
    parser.add_argument("--no_overlays", action="store_true",
                        help="do not write OUTPUT/overlays/<case>.png (PET MIP with truth, clicks and "
                             "the first and last step's prediction)")
    parser.add_argument("--in_process", action="store_true",
                        help="fast development loop: load the entrypoint's model once in this process and "
                             "preprocess each case once (same masks; the default, one process per step, is "
                             "the faithful one)")
    parser.add_argument("--sandbox", action="store_true",
                        help="run each step in the platform's runtime without Docker: no network, read-only "
                             "input, model and root file system, uid 65534, a fresh /tmp (needs root and "
                             "util-linux; see local_challenge/sandbox.py)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="run each (case, step) as a Ray task on this cluster (a Ray address such as "
                             "HEAD_IP:6379, or 'local' to start Ray on this machine): the same entrypoint, flags, "
                             "budget and outputs, retried when a node is lost, resumable; needs pip install "
                             "'.[cluster]' (see local_challenge/README.md, 'On a cluster')")
    parser.add_argument("--clicks", type=Path, default=None, metavar="DIR",
                        help="read each case's clicks from DIR/<case>.json (the challenge's JSON, e.g. clicks saved "
                             "by autopet-viewer) instead of simulating them; step s uses the first s of each kind")
    parser.add_argument("--overwrite", action="store_true",
                        help="run every step again; by default a rerun into the same --output skips the runs an "
                             "earlier run finished with the same code, model and options (their outputs checked "
                             "by sha256, the run log marks them resumed)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--platform_layout", type=Path, default=None, metavar="DIR",
                        help="also write the run as Grand Challenge hands it to an evaluation method: "
                             "DIR/input/predictions.json, DIR/input/<pk>/output/..., DIR/ground_truth/ "
                             "(score it with python -m evaluation_metrics.gc_method)")
    return parser


@entrypoint(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.task == 2:
        from .task2 import main as task2_main

        # one implementation of the Task 2 run: its own command line, with the options that apply
        forwarded = ["--output", str(args.output), "--time_budget", str(args.time_budget)]
        if args.make_phantoms:
            size = args.phantom_size
            forwarded += ["--make_phantoms", str(args.make_phantoms), "--phantom_size", size, "--seed", str(args.seed)]
        elif args.cohort is not None:
            forwarded += ["--cohort", str(args.cohort)]
        else:
            raise InputError("give --cohort DIR (or --make_phantoms N)")
        if args.model is not None:
            forwarded += ["--model", args.model]
        if args.keep_work:
            forwarded.append("--keep_work")
        if args.platform_layout is not None:
            forwarded += ["--platform_layout", str(args.platform_layout)]
        return task2_main(forwarded)
    cohort = args.cohort
    if args.make_phantoms:
        from .runner import write_mixed_phantom_cohort

        cohort = write_mixed_phantom_cohort(args.output / "cohort", args.make_phantoms,
                                            size=args.phantom_size, seed=args.seed,
                                            progress=not args.no_progress)
    if cohort is None:
        raise InputError("give --cohort DIR (or --make_phantoms N)")
    from .runner import run_local_challenge, format_report

    result = run_local_challenge(cohort, args.output, model=args.model, docker_image=args.docker,
                                 entrypoint=args.entrypoint, time_budget=args.time_budget,
                                 timeout=args.timeout, dataset_name=args.dataset_name,
                                 max_cases=args.max_cases, n_steps=args.steps,
                                 keep_work=args.keep_work, progress=not args.no_progress,
                                 overlays=not args.no_overlays, in_process=args.in_process, sandbox=args.sandbox,
                                 overwrite=args.overwrite, clicks_dir=args.clicks,
                                 cluster=args.cluster)
    print(format_report(result))
    if args.platform_layout is not None:
        from .platform_layout import export_task1

        metadata = {}
        lesions = Path(cohort) / "lesions.json"  # the phantom writer's per-case facts (tracer)
        if lesions.is_file():
            from autopet_common.image_io import read_json

            metadata = {case: {"tracer": entry.get("tracer")} for case, entry in read_json(lesions).items()
                        if isinstance(entry, dict)}
        export_task1(args.output, args.platform_layout, metadata=metadata)
        print(f"platform layout: {args.platform_layout} (python -m evaluation_metrics.gc_method --input "
              f"{args.platform_layout / 'input'} --ground_truth {args.platform_layout / 'ground_truth'} --output ...)")
    return 1 if result.run_log.get("n_failed") else 0


if __name__ == "__main__":
    sys.exit(main())
