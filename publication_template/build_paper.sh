#!/usr/bin/env bash
# Build the challenge short paper as OUTDIR/paper.pdf, optionally filling it first.
#
#   build_paper.sh OUTDIR [fill_paper.py options: --task1 DIR [--task2 DIR] [--team NAME] ...]
#
# With fill options, runs fill_paper.py -o OUTDIR first (results.tex, method_facts.tex, figures/).
# Then compiles publication_template/paper.tex with latexmk, OUTDIR as the working directory,
# so the template folder is never written to. When latexmk or the LNCS class (llncs.cls) is
# missing it says what to install and exits with status 3 (the .tex files are still filled).
#
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3),
# LATEXMK (default: latexmk), KPSEWHICH (default: kpsewhich).
# Exit status: 0 built, 2 bad input, 3 TeX missing, other: LaTeX failed (see OUTDIR/paper.log).
set -euo pipefail

TEMPLATE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$TEMPLATE_DIR")"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    usage
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
OUT_DIR="$1"
shift

if [[ $# -gt 0 ]]; then
    if [[ -z "${PYTHON:-}" ]]; then
        if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then PYTHON="$REPO_DIR/.venv/bin/python"; else PYTHON=python3; fi
    fi
    "$PYTHON" "$TEMPLATE_DIR/fill_paper.py" "$@" -o "$OUT_DIR" || exit $?
fi

for generated in method_facts.tex results.tex; do
    if [[ ! -f "$OUT_DIR/$generated" ]]; then
        echo "error: $OUT_DIR/$generated not found: fill the paper first," \
             "e.g. build_paper.sh $OUT_DIR --task1 EVAL_DIR" >&2
        exit 2
    fi
done

LATEXMK="${LATEXMK:-latexmk}"
KPSEWHICH="${KPSEWHICH:-kpsewhich}"
missing=()
command -v "$LATEXMK" >/dev/null 2>&1 || missing+=("latexmk")
if ! command -v "$KPSEWHICH" >/dev/null 2>&1 || [[ -z "$("$KPSEWHICH" llncs.cls 2>/dev/null)" ]]; then
    missing+=("the LNCS class llncs.cls")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    {
        echo "error: cannot build the PDF: missing ${missing[*]}."
        echo "The filled sources are ready in $OUT_DIR (results.tex, method_facts.tex); to build the PDF install:"
        echo "  Debian/Ubuntu: sudo apt-get install latexmk texlive-latex-recommended texlive-publishers texlive-fonts-recommended"
        echo "                 (llncs.cls and splncs04.bst are in texlive-publishers)"
        echo "  TeX Live (tlmgr, any OS): tlmgr install latexmk llncs booktabs"
        echo "  or upload paper.tex, references.bib and $OUT_DIR/* to Overleaf (it ships llncs)."
        echo "Then re-run: $0 $OUT_DIR"
    } >&2
    exit 3
fi

cd "$OUT_DIR"
# "." first: the generated files in OUT_DIR; then the template folder (sections, bib); then TeX's own.
export TEXINPUTS=".:$TEMPLATE_DIR//:${TEXINPUTS:-}"
export BIBINPUTS=".:$TEMPLATE_DIR:${BIBINPUTS:-}"
status=0
"$LATEXMK" -pdf -interaction=nonstopmode -halt-on-error -file-line-error "$TEMPLATE_DIR/paper.tex" \
    > latexmk.log 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    echo "error: LaTeX failed (status $status); last lines of $OUT_DIR/latexmk.log:" >&2
    tail -n 25 latexmk.log >&2
    exit "$status"
fi
echo "built $(pwd)/paper.pdf"
