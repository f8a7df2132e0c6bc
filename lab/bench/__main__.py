"""``python -m lab.bench [--runs N] [--backend B] [--json FILE]``."""

import argparse

from . import BACKEND_NAMES, main
from . import __doc__ as _doc

ap = argparse.ArgumentParser(prog="python -m lab.bench", description=_doc.splitlines()[0])
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--backend", action="append", choices=BACKEND_NAMES,
                help="measure only this backend (repeatable); default: every available one")
ap.add_argument("--json", dest="json_out", metavar="FILE", help="also write the figures here")
args = ap.parse_args()
main(runs=args.runs, backends=args.backend, json_out=args.json_out)
