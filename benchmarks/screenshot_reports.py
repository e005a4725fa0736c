"""Render report pages in headless Chromium, save full-page PNGs, check every image loaded.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` Python package
(only its driver is used; it launches /usr/bin/chromium, nothing is downloaded).  The network is
blocked for the page: a report that needs anything from the internet fails the check.

    python benchmarks/screenshot_reports.py OUTPUT_DIR [--png-dir DIR]

Prints one line per page (images found / loaded) and exits 1 if any image failed to load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHECK = """() => Array.from(document.images).map(i => [i.getAttribute('src'),
                                                  i.complete && i.naturalWidth > 0])"""


def check_pages(pages: list[Path], png_dir: Path | None) -> list[dict]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      java_script_enabled=True)
        # anything that is not a local file is refused: the report must render offline
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith("file://") else route.abort())
        for page_path in pages:
            page = context.new_page()
            page.goto(page_path.absolute().as_uri(), wait_until="load")
            images = page.evaluate(CHECK)
            if png_dir:
                png_dir.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(png_dir / f"{page_path.stem}.png"), full_page=True)
            results.append({"page": str(page_path), "images": len(images),
                            "loaded": sum(ok for _, ok in images),
                            "failed": [src for src, ok in images if not ok]})
            page.close()
        browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="a mcinr-bids output folder")
    parser.add_argument("--png-dir", type=Path, help="write a full-page PNG per report here")
    args = parser.parse_args()
    pages = sorted(args.output_dir.glob("sub-*.html")) + sorted(
        args.output_dir.glob("group_report.html"))
    if not pages:
        print(f"no report pages in {args.output_dir}", file=sys.stderr)
        return 1
    results = check_pages(pages, args.png_dir)
    for result in results:
        print(f"{result['page']}: {result['loaded']}/{result['images']} images loaded"
              + (f"; failed: {', '.join(result['failed'])}" if result["failed"] else ""))
    return 0 if all(r["images"] and not r["failed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
