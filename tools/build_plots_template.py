"""Build plots/offline.html: the page template `dvc plots show` / `dvc plots diff` fill with charts.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so the HTML it writes shows
nothing without internet. This template inlines the three libraries (their minified UMD builds,
taken from the npm tarballs pinned below and checked against the registry's sha512 integrity), so
the page renders offline. .dvc/config points at it (``plots.html_template``).

The output is committed (about 0.8 MB) and byte-for-byte determined by the pins: rerun this script
only to change versions, then update PINS with the ``integrity`` that ``npm pack --json`` prints.

Usage: ``python tools/build_plots_template.py [--check]`` (needs ``npm`` and the npm registry;
``--check`` rebuilds in memory and fails if plots/offline.html differs).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "plots" / "offline.html"

# (package, version, file inside the tarball, npm dist.integrity, license). The majors match what
# dvc-render 1.x targets (Vega 5, Vega-Lite 5 specs with "$schema" .../vega-lite/v5.json, Embed 6).
PINS = [
    (
        "vega",
        "5.33.1",
        "package/build/vega.min.js",
        "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
        "BSD-3-Clause",
    ),
    (
        "vega-lite",
        "5.23.0",
        "package/build/vega-lite.min.js",
        "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
        "BSD-3-Clause",
    ),
    (
        "vega-embed",
        "6.29.0",
        "package/build/vega-embed.min.js",
        "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
        "BSD-3-Clause",
    ),
]

# dvc-render fills the page by plain string replacement of these placeholders (dvc_render/html.py).
# The one for the CDN <script> tags is deliberately absent: the libraries are inlined instead.
PLOTS_PLACEHOLDER = "{plot_divs}"
REFRESH_PLACEHOLDER = "{refresh_tag}"
FORBIDDEN_IN_JS = ("</script", "<!--", "{plot_divs}", "{refresh_tag}", "{scripts}")


def fetch(package: str, version: str, member: str, integrity: str, workdir: Path) -> tuple[str, str | None]:
    """The minified build ``member`` of ``package@version`` (integrity checked) and its LICENSE text."""
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--silent", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip().splitlines()[-1]
    tarball = (workdir / out).read_bytes()
    algo, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, tarball).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{package}@{version}: integrity mismatch ({algo}-{actual}, expected {integrity})")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{package}@{version}: {member} is not a file in the tarball")
        js = extracted.read().decode("utf-8")
        names = tar.getnames()
        license_file = tar.extractfile("package/LICENSE") if "package/LICENSE" in names else None
        license_text = license_file.read().decode("utf-8").strip() if license_file else None
    # Drop the source-map pointer (a request the browser would make for nothing).
    lines = [line for line in js.splitlines() if not line.startswith("//# sourceMappingURL=")]
    js = "\n".join(lines).strip() + "\n"
    for needle in FORBIDDEN_IN_JS:
        if needle in js:
            raise SystemExit(f"{package}@{version}: {member} contains {needle!r}, cannot be inlined safely")
    return js, license_text


def _squash(text: str) -> str:
    return " ".join(text.replace(".", " ").split())


def build() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        scripts = []
        provenance = []
        licenses: list[str] = []
        for package, version, member, integrity, license_ in PINS:
            js, license_text = fetch(package, version, member, integrity, Path(tmp))
            # vega-lite's and vega-embed's differ by one full stop: keep one copy of the text.
            if license_text and _squash(license_text) not in {_squash(t) for t in licenses}:
                licenses.append(license_text)
            build_file = member.removeprefix("package/")
            scripts.append(f"<script>/* {package}@{version} {build_file} ({license_}) */\n{js}</script>")
            provenance.append(f"       {package}@{version} {build_file}, npm integrity {integrity}, {license_}")
    provenance_text = "\n".join(provenance)
    license_block = "\n\n".join(licenses)
    return f"""<!DOCTYPE html>
<!-- Page template for `dvc plots show` / `dvc plots diff` (set as plots.html_template in .dvc/config).
     Vega, Vega-Lite and Vega-Embed are inlined, so the generated page renders without network.
     Generated by tools/build_plots_template.py from the npm packages (do not edit by hand):
{provenance_text}
     The three are BSD-3-Clause, University of Washington Interactive Data Lab (the vega tarball has
     no LICENSE file; its package.json says BSD-3-Clause). The LICENSE text shipped in the tarballs:

{license_block}
-->
<html>
<head>
    {REFRESH_PLACEHOLDER}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    {scripts[0]}
    {scripts[1]}
    {scripts[2]}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {PLOTS_PLACEHOLDER}
</body>
</html>
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if plots/offline.html is not what the pins build")
    args = parser.parse_args()
    page = build()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != page:
            name = OUTPUT.relative_to(REPO)
            print(f"{name} is out of date: run python tools/build_plots_template.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(REPO)} is up to date")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)} ({len(page.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
