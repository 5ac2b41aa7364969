"""slm-bench: a host-side harness that measures how fast small language models run.

Kept import-light on purpose: ``slm-bench --help`` imports this package, and the heavy
stacks (tvm, torch, pandas, matplotlib) must only load inside the subcommand that needs them.
"""

__version__ = "0.1.0"
