"""``slm-bench kit``: light help, the kit's folder on the last line, errors as one line."""

from click.testing import CliRunner

from harness.cli import cli
from harness.errors import UserError
from harness.kits import llamacpp

from .test_main import imported_after


def test_kit_help_imports_nothing_heavy():
    assert (
        imported_after(["kit", "--help"]) == []
        and imported_after(["kit", "llama.cpp", "--help"]) == []
    )


def test_kit_llamacpp_prints_the_bin_dir_last(tmp_path, monkeypatch):
    def build(arch, log=print):
        log(f"building llama.cpp for {arch}")
        return tmp_path / f"llamacpp-{arch}-0123" / "bin"

    monkeypatch.setattr(llamacpp, "build_llamacpp", build)
    result = CliRunner().invoke(cli, ["kit", "llama.cpp", "--arch", "aarch64"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == str(tmp_path / "llamacpp-aarch64-0123" / "bin")
    assert "building llama.cpp for aarch64" in result.output  # progress goes to stderr
    # a choice
    assert CliRunner().invoke(cli, ["kit", "llama.cpp", "--arch", "armv7"]).exit_code == 2


def test_kit_errors_are_one_line(monkeypatch):
    def no_cross(arch, log=print):
        raise UserError(
            "building llama.cpp for aarch64 needs the compiler "
            "aarch64-linux-gnu-gcc, which is not on PATH; install it"
        )

    monkeypatch.setattr(llamacpp, "build_llamacpp", no_cross)
    result = CliRunner().invoke(cli, ["kit", "llama.cpp", "--arch", "aarch64"])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
