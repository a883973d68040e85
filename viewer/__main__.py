"""``autopet-viewer`` / ``python -m viewer``: serve the Task 1 click viewer (see :mod:`viewer.server`)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from typing import Sequence

from autopet_common.cli import ArgumentParser, entrypoint, positive_float, positive_int
from autopet_common.errors import InputError

PROG = "autopet-viewer"
TOKEN_ENV = "AUTOPET_VIEWER_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    from Task1.session import add_method_arguments

    parser = ArgumentParser(
        prog=PROG,
        description="A person in the loop for Task 1: serve a web page where you click on PET/CT (left click: "
                    "tumor, shift + left click: background) and the model answers, with undo, reset, the mask and "
                    "the clicks to download, and for cases with a label a replay of the challenge's simulated "
                    "clicks step by step with the Dice of each step. The JSON API is at /docs.",
        epilog="Example: autopet-viewer --model models/task1_phantom_organs --cohort test/sample_cohort, then open "
               "http://127.0.0.1:8000. Beyond this machine (--host 0.0.0.0) a token is required: --token or "
               f"${TOKEN_ENV}; open the page as http://HOST:PORT/?token=...")
    parser.add_argument("--model", default=None,
                        help="a Task 1 model folder (recipe, nnU-Net or MONAI) or 'model-free' (default: the "
                             "entrypoint's default chain: /opt/ml/model, $AUTOPET_MODEL_DIR, the phantom demo model)")
    parser.add_argument("--cohort", default=None,
                        help="a folder of cases: nnU-Net raw (imagesTr/<case>_0000 CT, _0001 PET, labelsTr/ optional) "
                             "or the challenge's job layout (images/ct, images/pet), in it or its sub-folders")
    parser.add_argument("--case", nargs=2, action="append", default=[], metavar=("CT", "PET"),
                        help="a CT and a PET image to offer as one case (repeatable)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; any other needs a token)")
    parser.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    parser.add_argument("--token", default=None,
                        help=f"a secret every API request must carry (default: ${TOKEN_ENV}); required with a --host "
                             "beyond loopback")
    parser.add_argument("--max_sessions", type=positive_int, default=4,
                        help="open sessions at most (each holds a case and its prepared state; default 4)")
    parser.add_argument("--idle_minutes", type=positive_float, default=30.0,
                        help="close a session idle for this long (default 30)")
    parser.add_argument("--max_upload_mb", type=positive_float, default=512.0,
                        help="largest CT + PET upload in MB (default 512)")
    parser.add_argument("--full_prediction", action="store_true",
                        help="predict the whole case on every click (default: only the sliding-window tiles the "
                             "click changes, which gives the same mask; see Task1/incremental.py)")
    add_method_arguments(parser)
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(args: argparse.Namespace):
    """The application for the parsed flags (the model loaded once): what ``main`` serves."""
    from Task1.session import method_options, open_method, resolve_task1_model
    from viewer.cases import find_cases
    from viewer.server import create_app, niivue_problem
    from viewer.sessions import SessionStore

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise InputError(f"--host {args.host} serves beyond this machine: give a --token (or ${TOKEN_ENV})")
    cases = find_cases(args.cohort, args.case)
    problem = niivue_problem()
    if problem:
        logging.getLogger("viewer").warning(problem)
    model = resolve_task1_model(args.model)
    method = open_method(model, incremental=not args.full_prediction, **method_options(args))
    method.load_models()  # before the first request, not during it
    store = SessionStore(max_sessions=args.max_sessions, idle_seconds=args.idle_minutes * 60)
    return create_app(method, cases, store=store, token=token, max_upload_bytes=int(args.max_upload_mb * 1024 ** 2),
                      model_name=method.name)


@entrypoint(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise InputError("the viewer needs its extra: pip install '.[viewer]' (./setup.sh installs it)") from None
    app = build_app(args)
    print(f"{PROG}: serving http://{args.host}:{args.port}/ (API docs at /docs); Ctrl+C stops", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
