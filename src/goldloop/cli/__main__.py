"""`python -m goldloop.cli`: the same command as `goldloop`."""

from . import main

main(prog_name="goldloop")
