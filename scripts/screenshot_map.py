"""Screenshot a patchmap HTML map in headless Chromium with the network cut off.

    python scripts/screenshot_map.py MAP.html OUT.png [--width 1400 --height 900]

Uses Debian's Chromium (``/usr/bin/chromium``, or ``$PATCHMAP_CHROMIUM``) through Playwright;
every request that is not ``file:`` or ``data:`` is aborted and listed, so the picture shows
what the map looks like offline. Prints what it blocked and any JavaScript errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str | None:
    """Debian's Chromium, or ``$PATCHMAP_CHROMIUM``; None when neither exists."""
    for candidate in (os.environ.get("PATCHMAP_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def screenshot(
    html: Path, png: Path, *, width: int = 1400, height: int = 900, layers: list[str] | None = None
) -> dict:
    """Open ``html`` offline, optionally tick layers by name, save ``png``; return what happened."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium (or set PATCHMAP_CHROMIUM)")
    blocked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": height})

        def route(r):
            url = r.request.url
            if url.startswith(("file:", "data:", "about:", "blob:")):
                r.continue_()
            else:
                blocked.append(f"{r.request.resource_type} {url}")
                r.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # a blocked tile logs "Failed to load resource": that is the network cut, not a bug
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
        page.goto(html.resolve().as_uri(), wait_until="load")
        if page.evaluate("typeof window.patchmap === 'function'"):  # the plan and compare maps
            page.wait_for_function("document.body.dataset.pmReady === '1'", timeout=60_000)
        for name in layers or []:
            page.get_by_label(name, exact=True).check()
        page.wait_for_timeout(400)
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png))
        browser.close()
    return {"blocked": blocked, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("map_html", type=Path)
    ap.add_argument("out_png", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--layer", action="append", default=[], help="tick this overlay by name first")
    a = ap.parse_args(argv)
    res = screenshot(a.map_html, a.out_png, width=a.width, height=a.height, layers=a.layer)
    for b in res["blocked"]:
        print(f"blocked (offline): {b}")
    for e in res["errors"]:
        print(f"javascript error: {e}", file=sys.stderr)
    print(a.out_png)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
