"""Build the packaged app and its installer for the OS this runs on.

    python packaging/build.py                  # icons, PyInstaller bundle, then the OS's package
    python packaging/build.py --package none   # the bundle only
    python packaging/build.py --package nsis --no-compress --nsis-target amd64-unicode   # CI check on Linux

Steps:
1. render ``resources/xnat-uploader.svg`` to PNG with Qt's QSvgRenderer, and write ``.ico`` and
   ``.icns`` with Pillow (a build-time need only: ``pip install -e '.[packaging]'``);
2. run PyInstaller on ``packaging/xnat_uploader.spec`` (one-folder, windowed);
3. package: NSIS installer on Windows (``makensis``, also available on Linux for checking the
   script), a ``.dmg`` on macOS (``installer/macos/make_dmg.sh``, signing when configured), a
   ``.tar.gz`` on Linux. The version comes from ``xnat_uploader.__version__`` and is stamped into
   the NSIS script (``/D`` defines) and the bundle.

Prints the path of every artifact it writes. Exit code 0 on success.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "xnat_uploader.spec"
SVG = ROOT / "resources" / "xnat-uploader.svg"
NSI = ROOT / "installer" / "windows" / "xnat-uploader.nsi"
MACOS = ROOT / "installer" / "macos"
APP_NAME = "xnat-uploader"
APP_TITLE = "XNAT Uploader"  # same as in the spec: the macOS .app name
ICO_SIZES = [16, 20, 24, 32, 40, 48, 64, 128, 256]
_qt_app: object = None  # the QGuiApplication that icon rendering needs, kept alive for the process


def say(message: str) -> None:
    """Print a progress line to stderr (stdout carries only the artifact paths)."""
    print(f"==> {message}", file=sys.stderr, flush=True)  # noqa: T201


def app_version() -> str:
    """``xnat_uploader.__version__``, read from the source without importing the package."""
    text = (ROOT / "xnat_uploader" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if not match:
        raise SystemExit("cannot find __version__ in xnat_uploader/__init__.py")
    return match.group(1)


def numeric_version(version: str) -> str:
    """Windows wants ``X.Y.Z.W`` of numbers: ``0.2.0rc1`` becomes ``0.2.0.0``."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3]]
    numbers += [0] * (4 - len(numbers))
    return ".".join(str(n) for n in numbers)


def machine() -> str:
    """The CPU architecture in artifact names: ``x86_64`` or ``arm64``."""
    arch = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(arch, arch)


def os_name() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


# --- 1. icons -------------------------------------------------------------------------------------


def render_png(svg: Path, size: int, out: Path) -> Path:
    """Render ``svg`` to a square ``size`` PNG with Qt (offscreen when no display is needed)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    global _qt_app
    if QGuiApplication.instance() is None:
        # Offscreen for this process only: the frozen self-test later must see the real platform.
        previous = os.environ.get("QT_QPA_PLATFORM")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        _qt_app = QGuiApplication([sys.argv[0]])
        if previous is None:
            del os.environ["QT_QPA_PLATFORM"]
        else:
            os.environ["QT_QPA_PLATFORM"] = previous
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"invalid SVG: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"cannot write {out}")
    return out


def make_icons(out_dir: Path) -> dict[str, Path]:
    """Write ``xnat-uploader.png`` (256 px), ``.ico`` (16-256 px) and ``.icns`` (16-1024 px) to ``out_dir``."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise SystemExit("Pillow is needed to build the icons: pip install -e '.[packaging]'") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    big = render_png(SVG, 1024, out_dir / f"{APP_NAME}-1024.png")
    png = render_png(SVG, 256, out_dir / f"{APP_NAME}.png")
    with Image.open(big) as image:
        rgba = image.convert("RGBA")
        ico = out_dir / f"{APP_NAME}.ico"
        rgba.save(ico, sizes=[(s, s) for s in ICO_SIZES])
        icns = out_dir / f"{APP_NAME}.icns"
        rgba.save(icns)  # Pillow writes every ICNS size from 16 to 1024 (with @2x) from one image
    return {"png": png, "ico": ico, "icns": icns}


# --- 2. PyInstaller -------------------------------------------------------------------------------


def run_pyinstaller(dist: Path, work: Path, icon_dir: Path, clean: bool) -> Path:
    """Build the one-folder bundle into ``dist``; return the bundle folder (or the ``.app`` on macOS)."""
    env = dict(os.environ, XNAT_UPLOADER_ICON_DIR=str(icon_dir))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    cmd += ["--distpath", str(dist), "--workpath", str(work / "pyinstaller")]
    if clean:
        cmd.append("--clean")
    cmd.append(str(SPEC))
    say(" ".join(cmd))
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    if sys.platform == "darwin":
        return dist / f"{APP_TITLE}.app"
    return dist / APP_NAME


def bundle_executable(bundle: Path) -> Path:
    """The app's executable inside a bundle folder or ``.app``."""
    if bundle.suffix == ".app":
        return bundle / "Contents" / "MacOS" / APP_NAME
    return bundle / (f"{APP_NAME}.exe" if sys.platform == "win32" else APP_NAME)


def self_test(bundle: Path) -> None:
    """Run the frozen ``--self-test`` (offscreen on Linux) and fail the build when it fails."""
    exe = bundle_executable(bundle)
    env = dict(os.environ)
    if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    say(f"{exe} --self-test")
    result = subprocess.run(
        [str(exe), "--self-test", "--no-crash-dialog"], capture_output=True, text=True, env=env, timeout=300
    )
    sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"the frozen self-test failed with exit code {result.returncode}")


# --- 3. packages ----------------------------------------------------------------------------------


def build_nsis(bundle: Path, out_dir: Path, version: str, icon: Path, compress: bool, target: str | None) -> Path:
    """Compile the NSIS installer over ``bundle``; return the setup ``.exe``."""
    makensis = shutil.which("makensis")
    if not makensis:
        raise SystemExit("makensis not found: install NSIS (apt-get install nsis, or choco install nsis)")
    out = out_dir / f"{APP_NAME}-{version}-windows-{machine()}-setup.exe"
    cmd = [makensis, "-V2"]
    if target:
        cmd.append(f"-XTarget {target}")  # before the script: Target must come before any section
    if not compress:
        cmd.append("-DNO_COMPRESS")
    cmd += [
        f"-DVERSION={version}",
        f"-DVERSION_NUMERIC={numeric_version(version)}",
        f"-DSRCDIR={bundle}",
        f"-DICON={icon}",
        f"-DOUTFILE={out}",
        str(NSI),
    ]
    say(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=out_dir)
    return out


def build_dmg(app: Path, out_dir: Path, version: str, sign: bool) -> Path:
    """Sign the ``.app`` (when configured), wrap it in a ``.dmg``, sign and notarize that."""
    out = out_dir / f"{APP_NAME}-{version}-macos-{machine()}.dmg"
    if sign:
        subprocess.run(["bash", str(MACOS / "sign_and_notarize.sh"), "app", str(app)], check=True)
    subprocess.run(["bash", str(MACOS / "make_dmg.sh"), str(app), str(out), f"{APP_TITLE} {version}"], check=True)
    if sign:
        subprocess.run(["bash", str(MACOS / "sign_and_notarize.sh"), "dmg", str(out)], check=True)
    return out


def build_tarball(bundle: Path, out_dir: Path, version: str, png: Path) -> Path:
    """Pack the Linux bundle with its icon and a ``.desktop`` file into a ``.tar.gz``."""
    top = f"{APP_NAME}-{version}"
    out = out_dir / f"{APP_NAME}-{version}-linux-{machine()}.tar.gz"
    desktop = (
        "[Desktop Entry]\nType=Application\n"
        f"Name={APP_TITLE}\nComment=Upload DICOM folders to XNAT\n"
        f"Exec={APP_NAME}\nIcon={APP_NAME}\nCategories=Science;MedicalSoftware;\nTerminal=false\n"
    )
    extra = out_dir / "tar-extra"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / f"{APP_NAME}.desktop").write_text(desktop, encoding="utf-8")
    shutil.copy2(png, extra / f"{APP_NAME}.png")
    say(f"writing {out}")
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=top)
        for item in sorted(extra.iterdir()):
            tar.add(item, arcname=f"{top}/{item.name}")
    shutil.rmtree(extra)
    return out


def default_package() -> str:
    return {"win32": "nsis", "darwin": "dmg"}.get(sys.platform, "tar")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle and packages go (dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller's work folder (build/)")
    parser.add_argument(
        "--package",
        choices=["auto", "nsis", "dmg", "tar", "none"],
        default="auto",
        help="what to build after the bundle: auto = nsis on Windows, dmg on macOS, tar on Linux",
    )
    parser.add_argument("--no-compress", action="store_true", help="NSIS without compression (fast CI checks)")
    parser.add_argument("--nsis-target", help="makensis target, e.g. amd64-unicode (default: NSIS's x86-unicode)")
    parser.add_argument("--self-test", action="store_true", help="run the frozen app's --self-test after building")
    parser.add_argument("--clean", action="store_true", help="PyInstaller --clean (ignore its cache)")
    parser.add_argument("--no-sign", action="store_true", help="macOS: do not call the signing script")
    args = parser.parse_args(argv)

    started = time.monotonic()
    version = app_version()
    dist, work = args.dist.resolve(), args.work.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    say(f"{APP_NAME} {version} for {os_name()}-{machine()}")
    icons = make_icons(work / "icons")
    bundle = run_pyinstaller(dist, work, icons["png"].parent, clean=args.clean)
    say(f"bundle: {bundle} ({time.monotonic() - started:.0f} s)")
    if args.self_test:
        self_test(bundle)
    print(bundle)  # noqa: T201 - the artifact paths are the output

    package = default_package() if args.package == "auto" else args.package
    if package == "nsis":
        print(build_nsis(bundle, dist, version, icons["ico"], not args.no_compress, args.nsis_target))  # noqa: T201
    elif package == "dmg":
        print(build_dmg(bundle, dist, version, sign=not args.no_sign))  # noqa: T201
    elif package == "tar":
        print(build_tarball(bundle, dist, version, icons["png"]))  # noqa: T201
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
