"""Check the built book as a reader sees it: every page, offline, in headless Chromium.

    python tools/check_book.py _build/html [--config _config.yml] [--only PATTERN]

``make book`` runs it right after the build; ``tests/test_book_browser.py`` runs it on
``_build/html`` when the book has been built and Chromium is installed. It needs
Debian's ``chromium`` (``apt-get install chromium``) and ``websocket-client`` (the
``book`` extra): Chromium is driven over its DevTools protocol, so no browser driver
and no browser download are needed.

Two passes:

* **static**, on the HTML files alone: no ``<script src>`` or ``<link href>`` (nor
  ``@import``) may point off the site, at ``http:``, ``https:`` or ``//``. Plain
  hyperlinks (``<a href>``) are allowed.
* **browser**: each page is opened from ``file://``, the way the README says to open
  the book, in a Chromium with no network (every host name resolves to nothing and
  every ``http``/``https``/``ws`` request is blocked and counted). For each page:

  - it loads, with no uncaught JavaScript error, no ``console.error`` and no failed
    resource (a missing local file included);
  - no request leaves the machine;
  - math is typeset: where the page has math (Sphinx's ``.math`` elements), MathJax
    is loaded and has drawn one ``mjx-container`` per element, and no raw TeX
    (``\\(``, ``\\[``, ``$$``, ``\\begin{``) is left in the text outside code;
  - every ``<img>`` has loaded (``naturalWidth > 0``, lazy images forced to load);
  - no cell output shows an error (a traceback, an ``error`` output, an ``ename``);
  - every embedded Jupyter widget (``widget-view+json``) has been drawn;
  - every link to a file of the site resolves to a file in the build;
  - on a chapter page (``notebooks/NN_name.html``): every Colab link, the badge
    included, opens ``colab/NN_name.ipynb`` of the repository and branch set in
    ``_config.yml``, and the download link of the ``.ipynb`` resolves to that
    notebook in the build (a JSON notebook with cells).

It prints one line per problem (``page: kind: detail``) and a summary, and exits 1
if there was any problem.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = re.compile(r"^notebooks/(\d\d_[A-Za-z0-9_]+)\.html$")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Off-site assets in the static HTML: <script src=...>, <link href=...>, CSS @import.
_REMOTE = r"""(?:https?:)?//"""
STATIC_PATTERNS = {
    "remote script": re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?" + _REMOTE, re.I),
    "remote link": re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?" + _REMOTE, re.I),
    "remote @import": re.compile(r"@import\s+(?:url\()?\s*[\"']?" + _REMOTE, re.I),
}


@dataclass
class Problem:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


@dataclass
class Report:
    pages: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, dict] = field(default_factory=dict)

    def add(self, page: str, kind: str, detail: str) -> None:
        self.problems.append(Problem(page, kind, detail))


def find_browser() -> str | None:
    """The Chromium executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def pages_of(html_dir: Path, only: str | None = None) -> list[str]:
    """Every HTML page of the build (POSIX paths relative to it), not the theme's files."""
    pages = sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html"))
    pages = [p for p in pages if not p.startswith(("_static/", "_sources/", "_images/"))]
    if only:
        pages = [p for p in pages if fnmatch.fnmatch(p, only)]
    return pages


def repository(config: Path) -> tuple[str, str]:
    """(repository URL without a trailing slash or .git, branch) from _config.yml."""
    import yaml

    repo = (yaml.safe_load(config.read_text()) or {}).get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    return url, str(repo.get("branch") or "main")


def colab_url(repo_url: str, branch: str, stem: str) -> str:
    """Where chapter ``stem``'s badge must point: its Colab edition on GitHub."""
    path = urllib.parse.urlparse(repo_url).path.strip("/")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/colab/{stem}.ipynb"


def check_static(html_dir: Path, pages: list[str], report: Report) -> None:
    for page in pages:
        text = (html_dir / page).read_text(encoding="utf-8", errors="replace")
        for kind, pattern in STATIC_PATTERNS.items():
            for m in pattern.finditer(text):
                end = text.find(">", m.end())
                report.add(page, kind, text[m.start():min(end + 1, m.start() + 200)])


# --- the browser --------------------------------------------------------------------------


class DevTools:
    """A minimal client of Chromium's DevTools protocol over one page's websocket."""

    def __init__(self, ws_url: str, timeout: float = 60):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def _recv(self, deadline: float) -> dict | None:
        import websocket

        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def call(self, method: str, params: dict | None = None, *, wait: float = 60) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None:
                break
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"{method}: no answer in {wait:.0f} s")

    def wait_for(self, event: str, timeout: float) -> bool:
        """Wait for an event not seen yet since the last drain; True if it came."""
        if any(e["method"] == event for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None:
                break
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    return True
        return False

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "timeout": int(timeout * 1000)}, wait=timeout + 5)
        if "exceptionDetails" in result:
            raise RuntimeError(_exception_text(result["exceptionDetails"]))
        return result.get("result", {}).get("value")

    def drain(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


def _exception_text(details: dict) -> str:
    exc = details.get("exception") or {}
    text = exc.get("description") or details.get("text") or "exception"
    where = details.get("url", "")
    return f"{text.splitlines()[0]} ({where}:{details.get('lineNumber', '?')})"


@contextlib.contextmanager
def chromium(browser: str, *, width: int = 1200, height: int = 1600, timeout: float = 60):
    """A headless Chromium with no network; yields a DevTools client of its page."""
    profile = tempfile.mkdtemp(prefix="check-book-chromium-")
    args = [
        browser, "--headless=new", "--remote-debugging-port=0", "--remote-allow-origins=*",
        f"--user-data-dir={profile}", f"--window-size={width},{height}",
        # Offline: no host name resolves, no proxy is reachable, nothing runs in the back.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps",
        "--disable-extensions", "--disable-gpu", "--mute-audio", "--no-pings",
        "--hide-scrollbars", "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    client = None
    try:
        port = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and port is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"{browser} exited with status {proc.returncode}")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError(f"{browser} did not start its DevTools server")
        # Keep reading its stderr so that it never blocks on a full pipe.
        import threading

        threading.Thread(target=proc.stderr.read, daemon=True).start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        client = DevTools(page["webSocketDebuggerUrl"], timeout=timeout)
        for domain in ("Page", "Runtime", "Network", "Log"):
            client.call(f"{domain}.enable")
        client.call("Network.setBlockedURLs",
                    {"urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]})
        client.call("Network.setCacheDisabled", {"cacheDisabled": True})
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


# What the page tells about itself once loaded, typeset and its images settled.
SETTLE_JS = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const until = async (test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) { if (test()) return true; await sleep(100); }
    return test();
  };
  const mathCount = document.querySelectorAll('.math').length;
  if (mathCount) {
    await until(() => window.MathJax && MathJax.startup && MathJax.startup.promise, %(ms)d);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await Promise.race([MathJax.startup.promise, sleep(%(ms)d)]);
    }
  }
  const views = document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]');
  const drawn = s => {
    const p = s.previousElementSibling;
    // html-manager draws each view in a div.widget-subarea put just before its script.
    return !!(p && p.querySelector('.jupyter-widgets, .lm-Widget')
              && p.getBoundingClientRect().height > 0);
  };
  if (views.length) await until(() => Array.from(views).every(drawn), %(ms)d);
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.race([
    Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
      i.addEventListener('load', r); i.addEventListener('error', r); }))),
    sleep(%(ms)d)]);
  // Raw TeX left in the text a reader sees (not in code, scripts or typeset math).
  const skip = 'script, style, pre, code, textarea, mjx-container, .highlight, .MathJax';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.nodeValue;
    if (!/\\\(|\\\[|\$\$|\\begin\{/.test(t)) continue;
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    raw.push(t.trim().slice(0, 120));
  }
  const outputs = Array.from(document.querySelectorAll('.cell_output, .output'));
  const errors = [];
  for (const o of outputs) {
    const cls = ' ' + o.className + ' ';
    const text = o.innerText || '';
    if (/ (traceback|error) /.test(cls) && / output /.test(cls)) {
      errors.push(text.trim().slice(0, 160) || o.className); continue;
    }
    if (/Traceback \(most recent call last\)|"ename"\s*:/.test(text)) {
      errors.push(text.trim().slice(0, 160));
    }
  }
  return {
    title: document.title,
    math: mathCount,
    mjx: document.querySelectorAll('.math mjx-container, mjx-container').length,
    mathInMath: Array.from(document.querySelectorAll('.math'))
        .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    mathjax: !!(window.MathJax && MathJax.version),
    raw: raw,
    images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    errors: Array.from(new Set(errors)),
    widgets: views.length,
    widgetsDrawn: Array.from(views).filter(drawn).length,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => ({
      href: a.href, raw: a.getAttribute('href'), cls: a.className,
      text: (a.innerText || a.title || a.getAttribute('aria-label') || '').trim().slice(0, 60),
      img: a.querySelector('img') ? a.querySelector('img').getAttribute('src') : null})),
  };
})()
"""


def _file_of(url: str) -> Path | None:
    parts = urllib.parse.urlparse(url)
    if parts.scheme != "file":
        return None
    return Path(urllib.parse.unquote(parts.path))


# Console messages that do not matter, each with why.
BENIGN_CONSOLE = (
    # pydata-sphinx-theme on a reader's first visit (nothing in localStorage yet): it
    # falls back to the "auto" light/dark mode, which is what it would choose anyway.
    re.compile(r"^Got invalid theme mode: .*Resetting to auto\.$"),
)
REFRESH = re.compile(
    r"<meta\s+http-equiv=[\"']?refresh[\"']?\s+content=[\"']?\d+;\s*url=([^\"'>]+)", re.I)


def check_page(dev: DevTools, html_dir: Path, page: str, report: Report, *,
               repo: tuple[str, str], wait_s: float) -> None:
    path = (html_dir / page).resolve()
    url = path.as_uri()
    # A redirect page (index.html): its target must exist; the target is checked itself.
    m = REFRESH.search(path.read_text(encoding="utf-8", errors="replace")[:4000])
    if m:
        target = _file_of(urllib.parse.urljoin(url, m.group(1).strip()))
        if target is None or not target.exists():
            report.add(page, "link", f"redirects to a missing page: {m.group(1)}")
        report.stats[page] = {"math": 0, "mjx": 0, "widgets": 0, "widgetsDrawn": 0,
                              "images": 0}
        return
    dev.drain()
    dev.call("Page.navigate", {"url": url})
    if not dev.wait_for("Page.loadEventFired", wait_s):
        report.add(page, "load", f"no load event in {wait_s:.0f} s")
    try:
        info = dev.evaluate(SETTLE_JS % {"ms": int(wait_s * 1000)}, timeout=4 * wait_s)
    except (RuntimeError, TimeoutError) as err:
        report.add(page, "script", f"the check itself failed: {err}")
        return
    time.sleep(0.2)  # let late console messages arrive
    with contextlib.suppress(TimeoutError):
        dev.call("Runtime.evaluate", {"expression": "0"}, wait=10)
    events = dev.drain()
    report.stats[page] = {k: info[k] for k in ("math", "mjx", "widgets", "widgetsDrawn")}
    report.stats[page]["images"] = len(info["images"])

    # JavaScript errors, console errors, failed loads, requests off the machine.
    urls = {e["params"]["requestId"]: e["params"].get("request", {}).get("url", "")
            for e in events if e["method"] == "Network.requestWillBeSent"}
    for e in events:
        method, params = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            report.add(page, "javascript", _exception_text(params.get("exceptionDetails", {})))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            if not any(p.search(text) for p in BENIGN_CONSOLE):
                report.add(page, "console", text[:200])
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            # A failed load is reported once, below, with its URL.
            if entry.get("level") == "error" and not entry.get("text", "").startswith(
                    "Failed to load resource"):
                report.add(page, "log", f"{entry.get('text', '')[:160]} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            req_url = params.get("request", {}).get("url", "")
            scheme = urllib.parse.urlparse(req_url).scheme
            if scheme not in ("file", "data", "blob", "about", "chrome", "devtools", ""):
                report.add(page, "network", f"request off the machine: {req_url[:160]}")
        elif method == "Network.loadingFailed":
            # A blocked request is counted above; an image is reported by the image check.
            if params.get("blockedReason") or params.get("type") == "Image":
                continue
            where = urls.get(params.get("requestId"), params.get("requestId"))
            report.add(page, "load", f"{params.get('errorText', 'failed')}: {where}")

    # Math.
    if info["math"]:
        if not info["mathjax"]:
            report.add(page, "math", f"{info['math']} math elements but MathJax did not load")
        elif info["mathInMath"]:
            report.add(page, "math", f"{len(info['mathInMath'])} of {info['math']} math "
                                     f"elements not typeset, e.g. {info['mathInMath'][0]!r}")
    for text in info["raw"][:5]:
        report.add(page, "math", f"raw TeX in the text: {text!r}")

    # Images, outputs, widgets.
    for img in info["images"]:
        if not img["ok"]:
            report.add(page, "image", f"not loaded: {img['src'][:160]}")
    for text in info["errors"]:
        report.add(page, "output", f"error output: {text!r}")
    if info["widgetsDrawn"] < info["widgets"]:
        report.add(page, "widget", f"{info['widgets'] - info['widgetsDrawn']} of "
                                   f"{info['widgets']} widgets not drawn")

    # Links to the site's own files.
    for link in info["links"]:
        target = _file_of(link["href"])
        if target is None:
            continue
        if not target.exists():
            report.add(page, "link", f"broken: {link['raw']}")

    # A chapter's Colab badge and its download link.
    m = CHAPTER.match(page)
    if m:
        check_chapter_links(page, m.group(1), info["links"], html_dir, report, repo)


def check_chapter_links(page: str, stem: str, links: list[dict], html_dir: Path,
                        report: Report, repo: tuple[str, str]) -> None:
    want = colab_url(*repo, stem)
    colab = [a for a in links if urllib.parse.urlparse(a["href"]).netloc.endswith(
        "colab.research.google.com")]
    if not colab:
        report.add(page, "colab", f"no Colab link (want {want})")
    for a in colab:
        if a["href"] != want:
            report.add(page, "colab", f"{a['href']} (want {want})")
    if not any(a["img"] for a in colab):
        report.add(page, "colab", "no Colab badge (a Colab link around an image)")

    downloads = [a for a in links if _file_of(a["href"]) is not None
                 and _file_of(a["href"]).suffix == ".ipynb"]
    if not downloads:
        report.add(page, "download", "no link to the chapter's .ipynb")
    for a in downloads:
        target = _file_of(a["href"])
        if target.name != f"{stem}.ipynb":
            report.add(page, "download", f"{a['raw']} is not {stem}.ipynb")
            continue
        try:
            target.resolve().relative_to(html_dir.resolve())
            nb = json.loads(target.read_text(encoding="utf-8"))
            if not nb.get("cells"):
                report.add(page, "download", f"{a['raw']}: a notebook with no cells")
        except ValueError:
            report.add(page, "download", f"{a['raw']}: outside the build")
        except (OSError, json.JSONDecodeError) as err:
            report.add(page, "download", f"{a['raw']}: {err}")


def check_book(html_dir: str | Path, *, config: str | Path | None = None,
               browser: str | None = None, only: str | None = None, wait_s: float = 30,
               static_only: bool = False, progress=None) -> Report:
    """Check every page of a built book; returns the report (``report.problems``)."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir}: no index.html (build the book first)")
    config = Path(config) if config else html_dir.resolve().parents[1] / "_config.yml"
    repo = repository(config)
    report = Report(pages=pages_of(html_dir, only))
    check_static(html_dir, report.pages, report)
    if static_only:
        return report
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    with chromium(browser) as dev:
        for i, page in enumerate(report.pages, 1):
            t0 = time.monotonic()
            check_page(dev, html_dir, page, report, repo=repo, wait_s=wait_s)
            if progress:
                progress(f"[{i}/{len(report.pages)}] {page} ({time.monotonic() - t0:.1f} s)")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html_dir", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--config", help="the book's _config.yml (default: two folders up)")
    ap.add_argument("--browser", help="the Chromium executable (default: found on PATH)")
    ap.add_argument("--only", help="check only the pages matching this glob")
    ap.add_argument("--wait", type=float, default=30,
                    help="seconds to wait for a page's load, math, widgets, images")
    ap.add_argument("--static-only", action="store_true", help="skip the browser pass")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line per page")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        report = check_book(args.html_dir, config=args.config, browser=args.browser,
                            only=args.only, wait_s=args.wait, static_only=args.static_only,
                            progress=print if args.verbose else None)
    except FileNotFoundError as err:
        print(f"check_book: error: {err}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    n_math = sum(s["math"] for s in report.stats.values())
    n_img = sum(s["images"] for s in report.stats.values())
    n_wid = sum(s["widgets"] for s in report.stats.values())
    mode = "static only" if args.static_only else (
        f"offline in Chromium: {n_math} math elements, {n_img} images, {n_wid} widgets")
    print(f"check_book: {len(report.pages)} pages ({mode}), {len(report.problems)} problems,"
          f" {time.monotonic() - t0:.0f} s")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
