"""Where a model's time goes: per-kernel profiles of prefill and decode (``slm-bench profile``).

Kept outside ``harness/engines/tvm`` on purpose: the engine's code is hashed into every bundle's
cache key, and profiling does not change what a bundle holds.

- ``schema``  the pydantic records a profile is written as (profile.json)
- ``costs``   kernel name -> group, and the bytes and operations a call moves, from its shapes
- ``collect`` one prefill and N decode steps per L through the Relax VM's instrument hook
- ``render``  the printed table, Markdown and chart
"""
