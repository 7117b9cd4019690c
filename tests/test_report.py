"""The report: files and tables from a real (tiny) run, escaping, the browser view, compare."""

from __future__ import annotations

import html as htmllib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli, tiny_suite
from harness.errors import UsageError
from harness.reports.compare import compare
from harness.reports.html import render
from harness.store import Store

XSS = "<script>alert(1)</script>"
METHODS = """
[[methods]]
name = "l1-filter"
grid = { ratio = [0.25, 0.5] }

[[methods]]
name = "weight-level"
grid = { sparsity = [0.7] }

[[methods]]
name = "l1-filter"
config = { layers = ["nope"] }
"""


@pytest.fixture(scope="module")
def filled(tmp_path_factory, data_dir):  # type: ignore[no-untyped-def]
    """A store filled by two smoke runs of a tiny suite (the second forced: two run ids)."""
    work = tmp_path_factory.mktemp("report")
    suite = tiny_suite(work, name="rep", models='["lenet-300-100", "lenet-5"]', methods=METHODS)
    args = ["run", "--suite", str(suite), "--profile", "smoke", "--data-dir", str(data_dir),
            "--store", str(work / "r.db"), "--report-dir", str(work / "out"),
            "--target", "onnxruntime-cpu", "--target", "torch-cpu"]
    # exit code 1: the l1-filter layers=["nope"] cells fail on purpose (the sweep goes on)
    first = run_cli(*args, cwd=work)
    assert first.returncode == 1 and "FAILED" in first.stdout, first.stderr
    second = run_cli(*args, "--force", "--model", "lenet-300-100", cwd=work)
    assert second.returncode == 1, second.stderr
    return work


def test_report_files_and_tables(filled: Path) -> None:
    out = filled / "out"
    for name in ("index.html", "speedup_vs_compression.png", "accuracy_vs_speedup.png",
                 "latency_throughput.png", "accuracy_vs_prune_ratio.png", "layers_00.png"):
        assert (out / name).stat().st_size > 1000, name
    page = (out / "index.html").read_text()
    st = Store(filled / "r.db")
    rows = st.rows(suite="rep")
    st.close()
    ok = [r for r in rows if r["status"] == "ok"]
    results = page.split('id="results"')[1].split("</table>")[0]
    assert results.count("<tr") == len(ok) + 1  # header + one row per measurement
    for r in ok:
        assert f"{r['latency_p50_ms']:.3g}" in results
    failed = page.split("Failed cells")[1].split("</table>")[0]
    assert "no layer named nope" in failed and failed.count("<tr>") == 1 + 2 * 2
    for fact in ("ISA", "onnxruntime", "openvino", "interleaved rounds", "precision used",
                 "onnxruntime-cpu: fp32"):
        assert fact in page, fact
    assert "Per-layer tables" in page and "fc1" in page
    from harness.timing import REOPEN_BELOW_MS  # the protocol note names the threshold in use
    assert f"Calls under {REOPEN_BELOW_MS} ms" in page and "fresh pair of sessions" in page


def test_report_rerenders_from_the_store_alone(filled: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(filled / "r.db", db)  # no cache, no data: only the store
    res = run_cli("report", "--store", str(db), "--suite", "rep", "--out", str(tmp_path / "o"),
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "accuracy_vs_prune_ratio.png").exists()


def test_names_from_suite_files_are_escaped(data_dir: Path, tmp_path: Path) -> None:
    """A model registered as `<script>alert(1)</script>` and a suite description with markup
    appear as text."""
    from harness import suite as suites
    from harness.api import ModelSpec
    from harness.benchmarks.models.lenet import LeNet300100
    from harness.registry import MODELS
    from harness.runner import RunOptions, Runner

    if XSS not in MODELS:
        MODELS.register()(ModelSpec(XSS, LeNet300100, (1, 28, 28), description=XSS))
    path = tiny_suite(tmp_path, name="xss", models=f'["{XSS}"]', methods="")
    s = suites.load(str(path))
    runner = Runner(RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu"],
                               store=tmp_path / "x.db", cache_dir=tmp_path / "c",
                               data_dir=data_dir))
    runner.run()
    st = Store(tmp_path / "x.db")
    page = render(st, "xss", tmp_path / "out").read_text()
    st.close()
    assert XSS not in page
    assert htmllib.escape(XSS) in page


def test_compare_two_runs(filled: Path) -> None:
    st = Store(filled / "r.db")
    runs = [r["run_id"] for r in st.runs()]
    rows, warnings = compare(st, runs[0], runs[1])
    assert rows and not [w for w in warnings if "machine" in w]
    assert {r["model"] for r in rows} == {"lenet-300-100"}
    assert all(r["latency_ratio"] > 0 and r["throughput_ratio"] > 0 for r in rows)
    assert all(abs(r["top1_diff_points"]) < 1e-9 for r in rows if r["top1_diff_points"] is not None)
    # the forced re-run scored the same items alike: a paired interval about 0, "same"
    scored = [r for r in rows if r["top1_diff_points"] is not None]
    assert scored and all(r["top1_change"] == "same" and r["top1_diff_ci"].startswith("[-")
                          for r in scored)
    with pytest.raises(UsageError, match="unknown run 'nope'"):
        compare(st, runs[0], "nope")
    st.close()


def test_compare_pairs_the_runs_accuracies_item_by_item() -> None:
    """B lost 30 of A's 450 right items and gained 3: lower, by a paired interval that
    excludes 0; the same vector: same; other items (another length) or no vector: no word."""
    import numpy as np

    from harness.accuracy_ci import pack
    from harness.reports.compare import _top1_change

    a = np.zeros(500, bool)
    a[:450] = True
    b = a.copy()
    b[:30] = False
    b[450:453] = True
    lower = _top1_change(pack(a), pack(b))
    assert lower["top1_change"] == "lower"
    lo, hi = (float(x) for x in lower["top1_diff_ci"].strip("[]").split(", "))
    assert lo < -5.4 < hi < 0  # B - A = -27 of 500 items
    assert _top1_change(pack(b), pack(a))["top1_change"] == "higher"
    assert _top1_change(pack(a), pack(a))["top1_change"] == "same"
    assert _top1_change(pack(a), pack(a[:400])) == {"top1_diff_ci": "", "top1_change": ""}
    assert _top1_change(None, pack(a)) == {"top1_diff_ci": "", "top1_change": ""}


def test_compare_words_each_speedup_with_its_claim_and_reads_no_change_from_noise(
        filled: Path, tmp_path: Path) -> None:
    """Each side's speedup carries its claim against its own run's A/A floor; a noisy side
    claims nothing, so its pair reads "noisy", never higher or lower."""
    from harness.claims import aa_bands, claim
    from harness.reports.table import method_label

    db = tmp_path / "noisy.db"
    shutil.copy(filled / "r.db", db)
    st = Store(db)
    runs = [r["run_id"] for r in st.runs()]
    rows, _ = compare(st, runs[0], runs[1])
    bands = aa_bands(st.rows(run_id=runs[0]))
    said = {(r["model"], method_label(r), r["target"], r["batch_size"]): claim(r, bands)
            for r in st.rows(run_id=runs[0]) if r["status"] == "ok"}
    assert {r["speedup_a"].removesuffix(" *").split("] ")[-1] for r in rows} <= {
        "A/A", "faster", "slower", "no measurable speedup", "noisy"}
    assert all(r["speedup_a"].removesuffix(" *").endswith(
        said[(r["model"], r["method"], r["target"], r["batch_size"])]) for r in rows)
    st.db.execute("UPDATE measurements SET quality='noisy', quality_reason='test' "
                  "WHERE run_id=?", (runs[1],))
    st.db.commit()
    rows, _ = compare(st, runs[0], runs[1])
    st.close()
    compressed = [r for r in rows if r["method"] != "baseline"]
    assert compressed and all(r["speedup_change"] == "noisy" for r in compressed)
    assert all(" noisy" in r["speedup_b"] for r in compressed)


def test_the_verdicts_badge_says_unscored_only_for_an_unscored_measurement() -> None:
    """A scored answer whose only flag is a short-chunk caveat is badged "caveat"."""
    from harness.recommend import Choice
    from harness.reports.html import _choice_view

    fields = {f: None for f in Choice.__dataclass_fields__}
    caveat = Choice(**{**fields, "label": "l1", "flags": (
        "speedup timed in chunks of 8 calls (README \"Switching bias\")",), "lacks": ()})
    unscored = Choice(**{**caveat.__dict__, "flags": (
        "not a scored run: calls < 1024 (16)", *caveat.flags)})
    view = _choice_view(caveat)
    assert view is not None and view["badge"] == "caveat"
    view = _choice_view(unscored)
    assert view is not None and view["badge"] == "unscored"


def _compare_altered(filled: Path, tmp_path: Path, update: str
                     ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`harness compare` of the two runs in a copy of the store whose second run was altered
    by `update` (SQL with one `?` for that run's id); (the result, the HTML page)."""
    db = tmp_path / "altered.db"
    shutil.copy(filled / "r.db", db)
    con = sqlite3.connect(db)
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started")]
    con.execute(update, (runs[1],))
    con.commit()
    con.close()
    page = tmp_path / "cmp.html"
    res = run_cli("compare", runs[0], runs[1], "--store", str(db), "--out", str(page),
                  cwd=tmp_path)
    return res, page


def test_compare_warns_when_machines_differ(filled: Path, tmp_path: Path) -> None:
    res, page = _compare_altered(filled, tmp_path, "UPDATE runs SET machine=json_set(machine, "
                                 "'$.cpu', 'Other CPU') WHERE run_id=?")
    assert res.returncode == 0, res.stderr
    assert "machine cpu differs" in res.stderr
    text = page.read_text()
    assert "machine cpu differs" in text and "lenet-300-100" in text
    assert "timed on different machines" not in res.stderr  # same node in both runs


def test_compare_takes_run_b_from_another_store(filled: Path, tmp_path: Path) -> None:
    """`--store-b`: RUN_B read from a second store, as results sent from another machine
    (here its CPU and timing host altered); a.db no longer holds RUN_B at all, so every
    matched row came from b.db. An unknown run there is one line naming --store-b."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for db in (a, b):
        shutil.copy(filled / "r.db", db)
    con = sqlite3.connect(b)
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started")]
    con.execute("UPDATE runs SET machine=json_set(machine, '$.cpu', 'Other CPU') WHERE run_id=?",
                (runs[1],))
    con.execute("UPDATE cells SET node=json_set(node, '$.host', 'other-host') WHERE run_id=?",
                (runs[1],))
    con.commit()
    con.close()
    con = sqlite3.connect(a)
    for table in ("samples", "measurements", "cells", "runs"):
        con.execute(f"DELETE FROM {table} WHERE run_id=?", (runs[1],))
    con.commit()
    con.close()
    same = run_cli("compare", runs[0], runs[1], "--store", str(filled / "r.db"), "--out",
                   str(tmp_path / "same.html"), cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    gone = run_cli("compare", runs[0], runs[1], "--store", str(a), cwd=tmp_path)
    assert gone.returncode == 2 and f"unknown run '{runs[1]}'" in gone.stderr, gone.stderr
    res = run_cli("compare", runs[0], runs[1], "--store", str(a), "--store-b", str(b), "--out",
                  str(tmp_path / "two.html"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    matched = [ln for ln in res.stdout.splitlines() if "matching measurements" in ln]
    assert matched and matched[0].split()[0] == next(
        ln for ln in same.stdout.splitlines() if "matching measurements" in ln).split()[0]
    assert "machine cpu differs: " in res.stderr and "timed on different machines" in res.stderr
    assert "Other CPU" in (tmp_path / "two.html").read_text()
    bad = run_cli("compare", runs[0], "nope", "--store", str(a), "--store-b", str(b),
                  cwd=tmp_path)
    assert bad.returncode == 2 and "unknown --store-b run 'nope' (choose from: " in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_compare_warns_when_a_pair_was_timed_on_two_machines(filled: Path,
                                                              tmp_path: Path) -> None:
    res, _ = _compare_altered(filled, tmp_path, "UPDATE cells SET node=json_set(node, '$.host',"
                              " 'other-node') WHERE run_id=?")
    assert res.returncode == 0, res.stderr
    assert "timed on different machines" in res.stderr


def test_compare_marks_speedups_timed_in_short_chunks(filled: Path, tmp_path: Path) -> None:
    """The tiny suite times 3-call chunks of sub-millisecond LeNet calls: every speedup but the
    A/A one is marked and the warning says why; re-warmed chunks (the second run's windows
    altered to record `rewarm`) carry no mark."""
    st = Store(filled / "r.db")
    runs = [r["run_id"] for r in st.runs()]
    rows, warnings = compare(st, runs[0], runs[1])
    st.close()
    marked = [r for r in rows if r["speedup_b"].endswith(" *")]
    assert marked and all(r["method"] != "baseline" for r in marked)
    assert all(r["speedup_a"].endswith(" *") == (r["method"] != "baseline") for r in rows
               if r["speedup_a"])
    short = [w for w in warnings if "marked *" in w]
    assert len(short) == 1 and short[0].startswith(f"{2 * len(marked)} speedup(s)"), warnings
    res, page = _compare_altered(filled, tmp_path, "UPDATE measurements SET window=json_set("
                                 "window, '$.rewarm', 4) WHERE run_id=?")
    assert res.returncode == 0, res.stderr
    assert f"{len(marked)} speedup(s) marked * were timed in chunks" in res.stderr
    assert "marked *" in page.read_text()


def test_compare_warns_when_one_run_reopened_sessions_and_the_other_did_not(
        filled: Path, tmp_path: Path) -> None:
    """A store's second run altered to read as if measured before measure version 4 (one
    session pair for all rounds: no `window.sessions`): every pair whose first-run row ran on
    fresh pairs is counted in one warning; altered to fresh pairs everywhere, the first run's
    one-pair rows are the ones counted (none: no warning)."""
    st = Store(filled / "r.db")
    runs = [r["run_id"] for r in st.runs()]

    def sessions(run: str) -> dict[tuple[Any, ...], int]:
        return {(r["model"], r["method"], json.dumps(r["method_config"], sort_keys=True),
                 r["target"], r["batch_size"]): (r.get("window") or {}).get("sessions", 1)
                for r in st.rows(run_id=run) if r["status"] == "ok"}

    both = sessions(runs[1])
    first = {k: v for k, v in sessions(runs[0]).items() if k in both}  # the compared pairs
    st.close()
    fresh = sum(1 for v in first.values() if v > 1)
    assert fresh >= 1  # the tiny suite's batch-1 LeNet calls are tens of microseconds
    res, _ = _compare_altered(filled, tmp_path, "UPDATE measurements SET window=json_remove("
                              "window, '$.sessions') WHERE run_id=?")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stderr.split())
    assert f"{fresh} pair(s) were timed on one session pair in one run" in text, text
    res, _ = _compare_altered(filled, tmp_path, "UPDATE measurements SET window=json_set("
                              "window, '$.sessions', 2) WHERE run_id=?")
    other = " ".join(res.stderr.split())
    unfresh = sum(1 for v in first.values() if v == 1)
    assert (f"{unfresh} pair(s) were timed on one session pair" in other) == bool(unfresh)


def test_report_groups_rows_by_the_machine_that_timed_them(filled: Path,
                                                           tmp_path: Path) -> None:
    db = tmp_path / "two-machines.db"
    shutil.copyfile(filled / "r.db", db)
    con = sqlite3.connect(db)
    con.execute("UPDATE cells SET node=json_set(node, '$.host', 'node-b', '$.ray_node', "
                "'abcdef0123') WHERE target='torch-cpu'")
    con.commit()
    con.close()
    out = tmp_path / "rep"
    res = run_cli("report", "--store", str(db), "--out", str(out))
    assert res.returncode == 0, res.stderr
    page = next(out.rglob("index.html")).read_text()
    assert "Timed on 2 machines" in page
    assert 'data-filter="timed_on"' in page and 'data-timed_on="node-b (ray abcdef01)"' in page
    single = tmp_path / "rep1"
    assert run_cli("report", "--store", str(filled / "r.db"), "--out", str(single)).returncode == 0
    assert "Timed on" not in next(single.rglob("index.html")).read_text()


def test_report_warns_when_a_models_rows_rest_on_two_baselines(filled: Path,
                                                               tmp_path: Path) -> None:
    """The newest row of each cell is shown, whichever run made it: rows of lenet-5 from
    another baseline (an edited suite of the same name) are flagged, naming the model."""
    db = tmp_path / "two-baselines.db"
    shutil.copyfile(filled / "r.db", db)
    con = sqlite3.connect(db)
    assert con.execute("UPDATE cells SET baseline_key='edited' WHERE model='lenet-5' "
                       "AND method='weight-level'").rowcount > 0
    con.commit()
    con.close()
    out = tmp_path / "rep"
    assert run_cli("report", "--store", str(db), "--out", str(out)).returncode == 0
    page = htmllib.unescape(next(out.rglob("index.html")).read_text())
    assert "rest on different baselines: lenet-5: 2 baselines (runs " in page
    assert "profile smoke)" in page and "lenet-300-100: " not in page.split("baselines:")[1][:200]
    single = tmp_path / "rep1"
    assert run_cli("report", "--store", str(filled / "r.db"), "--out", str(single)).returncode == 0
    assert "different baselines" not in next(single.rglob("index.html")).read_text()


def _browser():  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--allow-file-access-from-files"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def _viewport(browser: Any, width: int = 1366, height: int = 768) -> None:
    """Exactly width x height CSS pixels of page, whatever the window's own decorations."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1,
                             "mobile": False})


def _severe(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_page_in_headless_chromium(filled: Path) -> None:
    """Issue 14 at 1366x768: the verdict first, headline plots at full width, every point
    hoverable and clickable to its row, sortable headers, filters, advanced columns."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    browser = _browser()
    try:
        _viewport(browser)
        browser.get((filled / "out" / "index.html").as_uri())
        assert not _severe(browser)
        inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
        assert inner == [1366, 768]
        first = browser.find_element("css selector", "#verdict tbody tr")
        top, bottom = browser.execute_script(
            "var r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom]", first)
        assert browser.execute_script("return window.scrollY") == 0
        assert 0 < top and bottom <= 768, (top, bottom)  # the first verdict, unscrolled
        assert first.is_displayed() and "onnxruntime-cpu" in browser.find_element(
            "id", "verdict").text
        content = browser.execute_script("return document.body.clientWidth")
        plots = browser.find_elements("css selector", "figure.headline img")
        assert len(plots) == 2
        for img in plots:
            assert browser.execute_script("return arguments[0].complete && "
                                          "arguments[0].naturalWidth > 0", img)
            width = img.size["width"]
            assert width >= 1000 or width >= content - 4, (width, content)
        wide = browser.find_elements("css selector", "img.wide")
        assert len(wide) >= 2 and all(browser.execute_script(
            "return arguments[0].naturalWidth > 0", i) for i in wide)

        point = browser.find_elements("css selector", "svg.hot circle")[-1]  # drawn on top
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(browser).move_to_element(point).perform()
        tip = browser.find_element("id", "tip")
        assert tip.is_displayed()
        for word in ("lenet", "method:", "config:", "target:", "speedup:", "accuracy loss:",
                     "size:"):
            assert word in tip.text, (word, tip.text)
        ActionChains(browser).click(point).perform()
        row = browser.find_element("id", "row-" + point.get_attribute("data-row"))
        assert "hl" in row.get_attribute("class").split()
        assert row.is_displayed()

        headers = browser.find_elements("css selector", "#results thead th")
        col = [h.get_attribute("data-col") for h in headers].index("latency_p50_ms")

        def column() -> list[float]:
            cells = browser.find_elements("css selector", f"#results tbody td:nth-child({col + 1})")
            return [float(c.get_attribute("data-v")) for c in cells]

        browser.execute_script("arguments[0].scrollIntoView()", headers[col])
        headers[col].click()
        up = column()
        assert up == sorted(up) and len(up) > 3
        headers[col].click()
        assert column() == sorted(up, reverse=True)

        p99 = browser.find_element("css selector", "#results th[data-col=latency_p99_ms]")
        assert not p99.is_displayed()
        browser.find_element("id", "adv").click()
        assert p99.is_displayed()
        Select(browser.find_element("css selector", "select[data-filter=model]")
               ).select_by_value("lenet-5")
        shown = [r for r in browser.find_elements("css selector", "#results tbody tr")
                 if r.is_displayed()]
        assert shown and all(r.get_attribute("data-model") == "lenet-5" for r in shown)
        csv = browser.find_element("css selector", "a[download]").get_attribute("href")
        assert csv.endswith("/results.csv") and (filled / "out" / "results.csv").exists()
        assert not _severe(browser)
    finally:
        browser.quit()


def test_hostile_names_in_the_browser(tmp_path: Path) -> None:
    """A model name and a config value that are markup appear as text in the verdict, the
    table, the tooltips and the filters; nothing runs (an alert would fail the page load)."""
    from test_recommend import SUITE, make_store

    value = "<img src=x onerror=alert(2)>$x$"  # markup for the page, mathtext for the PNG
    db = make_store(tmp_path / "h.db", model=XSS, label_value=value)
    st = Store(db, readonly=True)
    page = render(st, SUITE, tmp_path / "out")
    st.close()
    html = page.read_text()
    assert XSS not in html and "<img src=x" not in html
    browser = _browser()
    try:
        _viewport(browser)
        browser.get(page.as_uri())
        assert XSS in browser.find_element("id", "verdict").text
        assert value in browser.find_element("id", "results").text
        tips = [c.get_attribute("data-tip") for c in
                browser.find_elements("css selector", "svg.hot circle")]
        assert tips and all(XSS in t for t in tips)
        assert not browser.find_elements("css selector", "#verdict script, #results img")
        assert not _severe(browser)
    finally:
        browser.quit()
