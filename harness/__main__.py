"""``python -m harness`` runs the same CLI as the ``slm-bench`` console script."""

from harness.cli import main

if __name__ == "__main__":
    main()
