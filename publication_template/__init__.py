"""Challenge short-paper template (LNCS) and the script that fills it from this repository's results."""
