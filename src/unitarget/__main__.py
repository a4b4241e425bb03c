"""``python -m unitarget`` (and ``torchrun -m unitarget``): the same command as the console script."""

from unitarget.cli import main

main()
