"""The one command-line layer of the toolkit: flag spelling, value checks and exit codes.

Every tool builds its parser with :class:`ArgumentParser` and wraps its ``main`` with
:func:`entrypoint`, so all of them behave alike:

- flags are spelled with underscores, as the challenge's scripts and nnU-Net spell them
  (``--time_budget``, ``--dataset_name``); the hyphen spelling of each (``--time-budget``) is
  accepted as a hidden alias, and so is the underscore spelling of a flag defined with hyphens;
- exit codes: 0 success; 1 an internal error (a bug: traceback printed) or a run whose
  cases failed (the tool says which); 2 bad input: a usage error (argparse), an
  :class:`~autopet_common.errors.InputError` (a missing or corrupt file, mismatched grids, NaN,
  malformed JSON, a bad value), or an unusable path (a file where a folder is expected, no
  permission); 130 interrupted. Bad input prints one line naming the input, no traceback
  (``--debug``, which every tool takes, adds it);
- value types for the common checks (:func:`positive_int`, :func:`non_negative_int`,
  :func:`positive_float`, :func:`finite_float`, :func:`int_list`), so ``--steps 0`` or
  ``--timeout nan`` are usage errors, not silent wrong runs.
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import sys
import traceback
from typing import Any, Callable

from autopet_common.errors import InputError

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1   # also: a run that finished with failed cases
EXIT_INPUT_ERROR = 2      # argparse's own code for usage errors
EXIT_INTERRUPTED = 130

_ALIAS_NOTE = "Flags may also be spelled with hyphens (--time-budget for --time_budget)."


def _alias(option: str) -> str | None:
    if not option.startswith("--") or len(option) <= 3:
        return None
    body = option[2:]
    if "_" in body:
        return "--" + body.replace("_", "-")
    if "-" in body:
        return "--" + body.replace("-", "_")
    return None


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the toolkit's flag spelling (see the module docstring):
    each long flag also answers to its other spelling, without cluttering ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        epilog = kwargs.get("epilog")
        kwargs["epilog"] = f"{epilog}\n\n{_ALIAS_NOTE}" if epilog else _ALIAS_NOTE
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on bad input, also print the traceback (for bug reports)")

    def _add_action(self, action):
        action = super()._add_action(action)
        self._register_aliases(action)
        return action

    def _register_aliases(self, action) -> None:
        for option in list(action.option_strings):
            alias = _alias(option)
            if alias and alias not in self._option_string_actions:
                self._option_string_actions[alias] = action

    def _get_option_tuples(self, option_string):
        # an abbreviation that matches a flag and its alias is not ambiguous: one action
        seen, unique = set(), []
        for option_tuple in super()._get_option_tuples(option_string):
            if id(option_tuple[0]) not in seen:
                seen.add(id(option_tuple[0]))
                unique.append(option_tuple)
        return unique

    def _registering(self, group):
        """Make an argument group (or mutually exclusive group) register aliases in this parser."""
        original = group._add_action

        def add_action(action):
            action = original(action)
            self._register_aliases(action)
            return action

        group._add_action = add_action
        return group

    def add_argument_group(self, *args, **kwargs):
        return self._registering(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, **kwargs):
        return self._registering(super().add_mutually_exclusive_group(**kwargs))


def configure_logging(quiet: bool = False) -> None:
    """The tools' log format on stderr: INFO and up, or only warnings and errors with ``quiet``."""
    import logging

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def input_error(exc: BaseException, prog: str | None = None) -> int:
    """Print a one-line error for bad input and return :data:`EXIT_INPUT_ERROR`."""
    prefix = f"{prog}: " if prog else ""
    print(f"{prefix}error: {exc}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def _describe_os_error(exc: OSError) -> str:
    what = {FileNotFoundError: "not found", NotADirectoryError: "a path component is a file, not a folder",
            IsADirectoryError: "is a folder, not a file", PermissionError: "permission denied",
            FileExistsError: "already exists"}.get(type(exc), exc.strerror or type(exc).__name__)
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    return f"{' -> '.join(str(p) for p in paths)}: {what}" if paths else f"{what} ({exc})"


def entrypoint(prog: str | None = None) -> Callable:
    """Decorator for a tool's ``main(argv=None) -> int``: the toolkit's exit codes.

    :class:`InputError` and :class:`OSError` with a path -> one line on stderr, exit 2;
    ``KeyboardInterrupt`` -> 130; ``BrokenPipeError`` (output piped into ``head``) -> 0; any
    other exception -> traceback, exit 1. ``SystemExit`` (argparse) passes through.
    """
    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        name = prog or main.__module__

        @functools.wraps(main)
        def wrapper(*args, **kwargs) -> int:
            argv = kwargs.get("argv", args[0] if args else None)
            debug = "--debug" in (sys.argv[1:] if argv is None else [str(a) for a in argv])
            try:
                code = main(*args, **kwargs)
                return EXIT_OK if code is None else int(code)
            except InputError as exc:
                if debug:
                    traceback.print_exc()
                return input_error(exc, name)
            except BrokenPipeError:
                try:
                    sys.stdout = None  # no flush of the closed pipe at exit
                except Exception:
                    pass
                return EXIT_OK
            except OSError as exc:
                if exc.filename is None:  # not about a path the user gave: a bug
                    traceback.print_exc()
                    return EXIT_INTERNAL_ERROR
                if debug:
                    traceback.print_exc()
                return input_error(_describe_os_error(exc), name)
            except (RecursionError, OverflowError, MemoryError) as exc:
                # deeply nested or huge values in an input file that got past its reader
                return input_error(f"input too large or too deeply nested ({type(exc).__name__}: {exc})", name)
            except KeyboardInterrupt:
                print(f"{name}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            except Exception:
                traceback.print_exc()
                print(f"{name}: internal error (a bug; please report it with the traceback above)",
                      file=sys.stderr)
                return EXIT_INTERNAL_ERROR

        return wrapper

    return decorate


# ------------------------------------------------------------------------------- value types
def _number(text: str, kind: type, what: str, accept: Callable[[Any], bool] = lambda value: True):
    """``kind(text)`` if it parses, is finite and passes ``accept``; else a usage error that says
    what was expected."""
    try:
        value = kind(text)
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a whole number >= 1", lambda value: value >= 1)


def non_negative_int(text: str) -> int:
    return _number(text, int, "a whole number >= 0", lambda value: value >= 0)


MAX_SEED = 2 ** 32 - 1  # NumPy's seed range (np.random.seed, as the challenge's click simulator seeds)


def seed(text: str) -> int:
    """A random seed, 0..2**32 - 1 (every tool's ``--seed``)."""
    return _number(text, int, f"a seed 0..{MAX_SEED}", lambda value: 0 <= value <= MAX_SEED)


DEVICES = ("auto", "cpu", "cuda", "mps")  # "auto": cuda when available, else cpu (decided at run time)


def device_name(text: str) -> str:
    """A torch device for ``--device``: auto, cpu, cuda, cuda:N or mps (whether it exists is
    checked when the model loads, never at parse time)."""
    if text in DEVICES or re.fullmatch(r"cuda:\d+", text or ""):
        return text
    raise argparse.ArgumentTypeError(f"expected one of auto, cpu, cuda, cuda:N, mps, got {text!r}")


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number")


def positive_float(text: str) -> float:
    return _number(text, float, "a finite number > 0", lambda value: value > 0)


def non_negative_float(text: str) -> float:
    return _number(text, float, "a finite number >= 0", lambda value: value >= 0)


def probability(text: str) -> float:
    return _number(text, float, "a probability 0..1", lambda value: 0 <= value <= 1)


def int_list(text: str) -> list[int]:
    """Comma- or space-separated whole numbers >= 0 (``0,1,2``)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return [non_negative_int(p) for p in parts]


def nnunet_dataset_id(text: str) -> int:
    """An nnU-Net dataset id, 1..999 (``Dataset001_x`` .. ``Dataset999_x``)."""
    return _number(text, int, "a dataset id 1..999", lambda value: 1 <= value <= 999)


NNUNET_FOLDS = ("0", "1", "2", "3", "4", "all")  # nnU-Net's default 5-fold split, or every case trains


def nnunet_fold(text: str) -> str:
    """A fold for ``nnUNetv2_train``: 0..4 (the default 5-fold split that the recipes' datasets
    get) or all; checked before a recipe spends minutes on data that ``nnUNetv2_train`` would refuse."""
    if text not in NNUNET_FOLDS:
        raise argparse.ArgumentTypeError(f"expected a fold 0..4 or all, got {text!r}")
    return text
