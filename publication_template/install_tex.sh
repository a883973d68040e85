#!/usr/bin/env bash
# Install what the paper's PDF build needs, from Debian: latexmk, the LNCS class llncs.cls
# (texlive-publishers), Latin Modern fonts, and poppler-utils (pdffonts / pdftotext / pdftoppm,
# which the publication test uses to check the fonts and read the first page). Needs root and
# apt. Safe to run again: with everything there it does nothing.
set -euo pipefail
if command -v latexmk > /dev/null && kpsewhich llncs.cls > /dev/null 2>&1 && command -v pdftotext > /dev/null \
        && kpsewhich lmodern.sty > /dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_tex.sh: needs root (apt-get install latexmk texlive-publishers lmodern poppler-utils)" >&2
    exit 2
fi
echo "install_tex.sh: installing latexmk, texlive-publishers, lmodern and poppler-utils with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    latexmk texlive-publishers lmodern poppler-utils > /dev/null
