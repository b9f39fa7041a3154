"""`python -m patchmap` runs the CLI."""

from patchmap.cli import main

main()
