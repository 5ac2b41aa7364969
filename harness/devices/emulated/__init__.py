"""An emulated Android phone for tests and demos: ``EmulatedDevice`` speaks the ADB protocol.

Imported lazily so that ``python -m harness.devices.emulated.adbd`` runs the module only once.
"""


def __getattr__(name):
    if name in ("EmulatedDevice", "load_profile"):
        from harness.devices.emulated import adbd

        return getattr(adbd, name)
    raise AttributeError(name)


__all__ = ["EmulatedDevice", "load_profile"]
