"""``python -m unitarget.cli``: the same command as the console script."""

from unitarget.cli import main

main()
