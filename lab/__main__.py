"""`python -m lab`: the twlab command line (what ./twlab runs); see lab/cli.py."""

from lab.cli import main

main()
