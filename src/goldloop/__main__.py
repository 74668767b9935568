"""`python -m goldloop`: the same command as `goldloop`."""

from .cli import main

main(prog_name="goldloop")
