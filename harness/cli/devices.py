"""``slm-bench devices``: list reachable devices; ``devices emulate`` runs the emulated phone."""

from __future__ import annotations

import json

import click

from harness.cli.options import adb_server_option

EPILOG = """\b
Examples:
  slm-bench devices                                   # this desktop and every adb device
  slm-bench devices --adb-server 192.168.1.20:5037    # phones on another host's adb server
  slm-bench devices --adb-server 10.0.0.2:5037 --adb-server 10.0.0.3:5037   # a lab of two hosts
  slm-bench devices emulate --profile galaxy-s24 --port 5600 --root ./phone
  slm-bench devices emulate --profile galaxy-s24 --arch arm64 --port 5601 --root ./arm-phone
  slm-bench devices emulate --profile galaxy-s24 --thermal-speedup 60   # throttles within a minute
  adb connect 127.0.0.1:5600 \\
      && slm-bench run --model smollm2-135m-instruct --device adb:127.0.0.1:5600"""


@click.group("devices", invoke_without_command=True, epilog=EPILOG)
@click.option(
    "--adb-server",
    "adb_servers",
    multiple=True,
    metavar="HOST:PORT",
    help=(
        "adb server to ask; repeat it for each host of a lab (each runs `adb -a nodaemon"
        " server`) [default: 127.0.0.1:5037]."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def devices(ctx, adb_servers, as_json):
    """List the desktop and every device the adb servers see, each by the name --device takes
    (adb:SERIAL, or adb:SERIAL@HOST:PORT when servers are named), with the matched profile (the
    name pool:PROFILE takes) and the CPU's cores and clusters as read from each (the names
    --cores takes) and the default set."""
    if ctx.invoked_subcommand is not None:
        return
    from harness.devices.local import LocalDevice

    local = LocalDevice()
    rows = [{**_row(local), "device": "local"}]
    for server in adb_servers or [None]:
        try:
            from harness.devices.adb import AdbDevice, list_serials

            for serial in list_serials(server):
                device = f"adb:{serial}@{server}" if server else f"adb:{serial}"
                rows.append({**_row(AdbDevice(serial, server)), "device": device})
        except click.ClickException:
            raise
        except Exception as exc:  # no adb server is not an error for listing: say so and go on
            click.echo(f"(no adb devices on {server or '127.0.0.1:5037'}: {exc})", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        ram = f"{r['ram_bytes'] / 2**30:.1f} GiB" if r.get("ram_bytes") else "?"
        cpu = (r.get("machine") or "?") + (" (emulated)" if r.get("emulated") else "")
        click.echo(
            f"{r['device']:<22} {r['model']:<20} {r['brand']:<10} {r['soc'][:28]:<28} {r['os']:<28}"
            f" RAM {ram:<9} CPU {cpu:<19} profile {r['profile']}"
        )
        click.echo(f"{'':<22} {r['topology']['summary']}; default: {r['topology']['default']}")


def _row(device) -> dict:
    """A device's facts and its CPU topology, with the core set a run uses by default."""
    from harness.devices.topology import format_list

    topology = device.topology()
    default = topology.default_cores(device.phone)
    clusters = "+".join(topology.clusters_covering(default))
    return {
        **device.info().model_dump(),
        "topology": {
            **topology.to_dict(),
            "summary": topology.describe(),
            "default": f"{clusters} (cpu {format_list(default)}), {len(default)} threads",
        },
    }


@devices.command("emulate")
@click.option(
    "--profile",
    default="galaxy-s24",
    show_default=True,
    help="Device profile (device_profiles/NAME.yaml) to answer getprop from.",
)
@click.option(
    "--port", default=5600, show_default=True, type=int, help="Loopback port adb connects to."
)
@click.option(
    "--root",
    default="./emulated-phone",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder standing for the phone's storage (kept across restarts).",
)
@click.option(
    "--arch",
    type=click.Choice(["x86_64", "arm64", "aarch64"]),
    default="x86_64",
    show_default=True,
    help=(
        "CPU of the phone's programs. arm64: a stock phone whose shell and every pushed binary are"
        " aarch64, run by qemu-user (needs root; the ARM64 userland is made on first use). Its"
        " timings are emulation, never phone speed. x86_64: host programs, the host's Python"
        " offered."
    ),
)
@click.option(
    "--thermal-speedup",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help=(
        "Run the phone's thermal model N times faster than real time (its battery's time constant"
        " is a device minute): with 60, a sustained load heats the phone past its profile's trip"
        " points and throttles it within seconds, so a test can watch the throttling."
    ),
)
@click.option(
    "--charging",
    is_flag=True,
    help=(
        "Emulate a plugged-in phone (dumpsys battery status 2, power_supply Charging). By default"
        " it discharges, as a phone on adb over Wi-Fi does, so its energy figures mean something."
    ),
)
def emulate(profile, port, root, arch, thermal_speedup, charging):
    """Run an emulated phone (a Python adbd speaking the real ADB protocol) in the foreground.

    The phone heats with its programs' CPU time. A profile with an `emulated: throttle:` section
    throttles when its hottest CPU zone passes a trip point: every core's scaling_cur_freq reads
    that share of its maximum, and the phone's programs really get that share of the CPU (they are
    stopped for the rest of each 100 ms), until the zone has cooled `release_c` below the trip."""
    from harness.devices.emulated.adbd import main

    arch = "aarch64" if arch == "arm64" else arch
    argv = [
        "--profile",
        profile,
        "--port",
        str(port),
        "--root",
        root,
        "--arch",
        arch,
        "--thermal-speedup",
        str(thermal_speedup),
    ]
    raise SystemExit(main(argv + (["--charging"] if charging else [])))


@devices.command("clean")
@click.option(
    "--device",
    "-d",
    "device_spec",
    default="adb",
    show_default=True,
    help="adb (the only attached phone) or adb:SERIAL.",
)
@adb_server_option
def clean(device_spec, adb_server):
    """Remove everything slm-bench put on a phone (/data/local/tmp/slm-bench)."""
    from harness.devices import open_device
    from harness.devices.adb import REMOTE_ROOT

    device = open_device(device_spec, "llvm", adb_server)
    device.clean()
    click.echo(f"removed {REMOTE_ROOT} from {device.serial}")
