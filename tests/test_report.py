"""The report: files and tables from a real (tiny) run, escaping, the browser view, compare."""

from __future__ import annotations

import html as htmllib
import shutil
import sqlite3
from pathlib import Path

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
    first = run_cli(*args, cwd=work)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--force", "--model", "lenet-300-100", cwd=work)
    assert second.returncode == 0, second.stderr
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
    with pytest.raises(UsageError, match="unknown run 'nope'"):
        compare(st, runs[0], "nope")
    st.close()


def test_compare_warns_when_machines_differ(filled: Path, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    shutil.copy(filled / "r.db", db)
    con = sqlite3.connect(db)
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started")]
    con.execute("UPDATE runs SET machine=json_set(machine, '$.cpu', 'Other CPU') WHERE run_id=?",
                (runs[1],))
    con.commit()
    con.close()
    res = run_cli("compare", runs[0], runs[1], "--store", str(db), "--out",
                  str(tmp_path / "cmp.html"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "machine cpu differs" in res.stderr
    page = (tmp_path / "cmp.html").read_text()
    assert "machine cpu differs" in page and "lenet-300-100" in page


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


def test_page_in_headless_chromium(filled: Path) -> None:
    browser = _browser()
    try:
        browser.get((filled / "out" / "index.html").as_uri())
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        images = browser.find_elements("css selector", "body > img")
        assert len(images) >= 4
        for img in images:
            assert img.is_displayed()
            assert browser.execute_script("return arguments[0].complete && "
                                          "arguments[0].naturalWidth > 0", img)
        headers = browser.find_elements("css selector", "#results thead th")
        col = [h.text for h in headers].index("latency_p50_ms")

        def column() -> list[float]:
            cells = browser.find_elements("css selector", f"#results tbody td:nth-child({col + 1})")
            return [float(c.text) for c in cells]

        headers[col].click()
        up = column()
        assert up == sorted(up) and len(up) > 3
        headers[col].click()
        assert column() == sorted(up, reverse=True)
    finally:
        browser.quit()
