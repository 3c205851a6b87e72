"""Training photos (and cut-outs) from Debian packages, fetched reproducibly.

``python -m bargainnet.data.photos fetch --out /work/data_local/train_photos`` downloads each
package below with ``apt-get download``, unpacks it with ``dpkg -x`` into a temporary folder,
copies the kept files to ``<out>/<package>/`` and writes ``<out>/sources.tsv`` (package,
version, file, installed path, licence from the package's machine-readable copyright file).

Only photographs are kept: the lists below were chosen by looking at every candidate (contact
sheets of each package); illustrations, renders, logos, screenshots, grayscale calibration shots
and synthetic test patterns are left out. ``gnome-backgrounds`` (43.x) and ``desktop-base``
(12.x) were inspected and hold no photographs (abstract renders and SVG theme art), so nothing
is taken from them; they stay listed so the decision is visible.

The Tux Paint stamps are cut-outs, not photos: only the stamps whose path relative to the stamps
folder hashes even (``zlib.crc32(relpath.encode()) % 2 == 0``) are copied, keeping their relative
paths; the odd half is reserved for evaluation. Packages reserved for evaluation are refused.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import atomic_copy, atomic_write_bytes, make_folder
from .sources import hash_half

# Never fetched, whatever a caller asks: kept for independent evaluation.
RESERVED_PACKAGES = frozenset(
    {"plasma-workspace-wallpapers", "lomiri-wallpapers-20.04", "ukui-wallpapers", "sway-backgrounds"}
)

_OPENCV_DATA = (
    "aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg "
    "chicky_512.png ela_original.jpg fruits.jpg graf1.png home.jpg left.jpg leuvenA.jpg "
    "licenseplate_motion.jpg messi5.jpg orange.jpg rubberwhale1.png squirrel_cls.jpg stuff.jpg"
).split()
_OPENCV_OTHER = (
    "alphamat/input_images/plant.jpg hfs/data/000.jpg hfs/data/001.jpg hfs/data/002.jpg "
    "text/scenetext01.jpg text/scenetext02.jpg text/scenetext03.jpg text/scenetext04.jpg "
    "text/scenetext05.jpg text/scenetext06.jpg"
).split()
_MATE_NATURE = (
    "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood YellowFlower"
).split()
_LOMIRI = (
    "Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly Picture_0B_by_freespace Picture_1A_by_freespace "
    "Wine_by_Jakkub_Mede aitzgorri_by_Aitzol_Berasategi free_by_Peter_Nerlich friends_by_Aitzol_Berasategi "
    "greentock_by_Peter_Nerlich life_by_Aitzol_Berasategi picosdeeuropa_by_Aitzol_Berasategi "
    "seeding_by_Clements_Engelhardt sunset_by_Aitzol_Berasategi"
).split()


@dataclass
class PackageFiles:
    """What to keep from one package: ``files`` maps an installed path (relative to the unpacked
    root) to the path the copyright file uses for it (its source-tree path)."""

    package: str
    files: dict[str, str] = field(default_factory=dict)
    kind: str = "photos"  # or "cutouts"
    note: str = ""


def photo_packages() -> list[PackageFiles]:
    """The packages and files the training photos come from (see the module docstring)."""
    ex = "usr/share/doc/opencv-doc/examples/"
    return [
        PackageFiles(
            "opencv-doc",
            {**{ex + "data/" + f: "samples/data/" + f for f in _OPENCV_DATA},
             **{ex + f: "samples/" + f for f in _OPENCV_OTHER}},
            note="colour photographs among the example images; grayscale calibration shots, drawings, "
            "logos, test patterns, a painting and duplicate stereo/sequence frames left out",
        ),
        PackageFiles(
            "mate-backgrounds",
            {f"usr/share/backgrounds/mate/nature/{n}.jpg": f"nature/{n}.jpg" for n in _MATE_NATURE},
            note="the nature/ photographs; abstract/ and desktop/ are illustrations",
        ),
        PackageFiles(
            "lomiri-wallpapers-16.04",
            {f"usr/share/backgrounds/{n}.jpg": f"16.04/{n}.jpg" for n in _LOMIRI},
            note="photographs; analogpattern and umang (abstract) left out",
        ),
        PackageFiles("gnome-backgrounds", {}, note="no photographs (abstract renders)"),
        PackageFiles("desktop-base", {}, note="no photographs (SVG theme art, logos)"),
    ]


STAMPS_PACKAGE = "tuxpaint-stamps-default"
STAMPS_ROOT = "usr/share/tuxpaint/stamps/"


def stamp_is_training(relpath: str) -> bool:
    """Whether a Tux Paint stamp (path relative to the stamps folder, ``/``-separated) belongs to
    the training half: its CRC-32 is even. The odd half is reserved for evaluation."""
    return hash_half(relpath) == "even"


# --------------------------------------------------------------------------------------------
# machine-readable copyright files (DEP-5)


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """``[(file globs, licence name), ...]`` of a DEP-5 copyright file, in file order."""
    stanzas, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if "files" in cur and "license" in cur:
                stanzas.append((cur["files"].split(), cur["license"].splitlines()[0].strip()))
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            cur[key] = value.strip()
    return stanzas


def licence_of(stanzas: list[tuple[list[str], str]], source_path: str) -> str:
    """The licence of ``source_path``: the last stanza whose glob matches (DEP-5's rule)."""
    found = "unknown"
    for globs, lic in stanzas:
        if any(fnmatch.fnmatchcase(source_path, g) for g in globs):
            found = lic
    return found


# --------------------------------------------------------------------------------------------
# fetching


def _unpack(package: str, workdir: Path) -> tuple[Path, str]:
    if package in RESERVED_PACKAGES:
        raise InputError(f"{package} is reserved for evaluation and must not be used")
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise InputError(f"{tool} not found: fetching photos needs a Debian-like system")
    dl = workdir / "deb"
    dl.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["apt-get", "download", package], cwd=dl, capture_output=True, text=True)
    debs = sorted(dl.glob(f"{package}_*.deb"))
    if run.returncode != 0 or not debs:
        raise InputError(f"apt-get download {package} failed: {run.stderr.strip()[-500:]}")
    version = debs[-1].name.split("_")[1]
    root = workdir / package
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True)
    return root, version


def fetch(out: str | os.PathLike, packages: list[str] | None = None, stamps: bool = True) -> list[dict]:
    """Fetch the training photos into ``out/<package>/`` and the training half of the Tux Paint
    stamps into ``out/tuxpaint-stamps-default/`` (relative paths kept); write ``out/sources.tsv``.
    Returns the rows of ``sources.tsv``. Existing files are replaced (atomically)."""
    out = Path(out)
    make_folder(out)
    specs = [p for p in photo_packages() if packages is None or p.package in packages]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bargainnet-fetch-") as tmp:
        for spec in specs:
            if not spec.files:
                print(f"{spec.package}: nothing kept ({spec.note})")
                continue
            root, version = _unpack(spec.package, Path(tmp))
            stanzas = parse_copyright((root / f"usr/share/doc/{spec.package}/copyright").read_text("utf-8", "replace"))
            stems = set()
            for inst, src in sorted(spec.files.items()):
                if not (root / inst).is_file():
                    raise InputError(f"{spec.package} {version} has no {inst} (package changed?)")
                name = Path(inst).name
                # photo folders are read by stem: two files of one stem would hide one of them
                if Path(name).stem in stems:
                    raise InputError(f"{spec.package}: two kept files have the stem {Path(name).stem!r}")
                stems.add(Path(name).stem)
                atomic_copy(root / inst, out / spec.package / name)
                rows.append({"package": spec.package, "version": version, "file": f"{spec.package}/{name}",
                             "installed_path": "/" + inst, "licence": licence_of(stanzas, src), "kind": "photo"})
            print(f"{spec.package} {version}: {len(spec.files)} photos")
            shutil.rmtree(root)
        if stamps and (packages is None or STAMPS_PACKAGE in packages):
            root, version = _unpack(STAMPS_PACKAGE, Path(tmp))
            stanzas = parse_copyright((root / f"usr/share/doc/{STAMPS_PACKAGE}/copyright").read_text("utf-8", "replace"))
            base = root / STAMPS_ROOT
            kept = skipped = 0
            for p in sorted(base.rglob("*.png")):
                rel = p.relative_to(base).as_posix()
                if not stamp_is_training(rel):
                    skipped += 1
                    continue
                atomic_copy(p, out / STAMPS_PACKAGE / rel)
                kept += 1
                rows.append({"package": STAMPS_PACKAGE, "version": version, "file": f"{STAMPS_PACKAGE}/{rel}",
                             "installed_path": "/" + STAMPS_ROOT + rel,
                             "licence": licence_of(stanzas, "stamps/" + rel), "kind": "cutout"})
            print(f"{STAMPS_PACKAGE} {version}: {kept} stamps of the even half ({skipped} odd-half left out)")
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["package", "version", "file", "installed_path", "licence", "kind"], delimiter="\t",
                       lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "sources.tsv", buf.getvalue().encode())
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bargainnet.data.photos", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and unpack the training photos and cut-outs")
    f.add_argument("--out", required=True, help="folder for <package>/ folders and sources.tsv")
    f.add_argument("--packages", help="comma-separated subset of the packages (default: all)")
    f.add_argument("--no-stamps", action="store_true", help="skip the Tux Paint stamps")
    args = parser.parse_args(argv)
    try:
        pk = [p.strip() for p in args.packages.split(",")] if args.packages else None
        rows = fetch(args.out, pk, stamps=not args.no_stamps)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} files and {Path(args.out) / 'sources.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
