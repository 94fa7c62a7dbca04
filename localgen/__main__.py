"""`python -m localgen`: the same as the `localgen` command."""

from localgen.cli import main

main()
