"""EST reports: Table 5.2 Markdown layout, long CSV, canonical JSON, PNG plots, determinism and input checks."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from emotk.errors import DataError
from emotk.eval.report import (
    AVG,
    MISSING,
    flatten_rows,
    markdown_table,
    render_markdown,
    write_est_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _entry(emo, pcc, wer, spk, n, failed=0, cer=None):
    return {"emo_sim": emo, "rate_pcc": pcc, "wer": wer, "cer": cer, "spk_sim": spk, "n": n, "n_failed": failed}


def _results(order: str = "forward") -> dict:
    """A results dict as the runner builds it; settings deliberately out of the canonical order."""
    zest = {"USUE": _entry(0.50, 0.20, 9.0, 0.60, 2000, failed=3, cer=4.0),
            "SSST": _entry(0.70, 0.30, 6.0, 0.70, 1200, cer=2.5),
            "UTE": _entry(0.60, None, 8.0, 0.65, 1000)}
    copy = {"SSST": _entry(0.30, 0.10, 2.0, 0.99, 1200), "USUE": _entry(0.20, float("nan"), 3.0, 0.98, 2000)}
    systems = {"s2s-zest": zest, "copy-source": copy}
    if order == "reverse":  # same content, other insertion order everywhere
        systems = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(systems.items()))}
    return {
        "provenance": {"bundle": "/models/zest-bundle", "bundle_sha256": "ab" * 32,
                       "pairs": {"SSST": {"path": "pairs/SSST.jsonl", "sha256": "cd" * 32, "count": 1200},
                                 "USUE": {"path": "pairs/USUE.jsonl", "sha256": "ef" * 32, "count": 2000}},
                       "backends": {"emotion": "emotk-emotion", "asr": "faster-whisper:tiny.en",
                                    "speaker": "resemblyzer", "rate": "whisper-words"},
                       "versions": {"emotk": "0.1.0", "torch": "2.13.0"},
                       "command": "emotk evaluate est --setting SSST", "created": "2026-11-02T10:00:00+00:00"},
        "systems": systems,
        "matrices": {"s2s-zest": {"labels": ["angry", "happy", "neutral", "sad"],
                                  "vs_reference": [[0.8, 0.5, 0.4, 0.3], [0.5, 0.7, 0.4, 0.2],
                                                   [0.4, 0.4, 0.6, 0.3], [0.3, 0.2, 0.3, 0.9]],
                                  "vs_source": [[0.2, 0.3, None, 0.5]] * 4}},
        "noise": {"s2s-zest@10dB": {"SSST": {"emo_sim": 0.52, "n": 1200}},
                  "s2s-zest@20dB": {"SSST": {"emo_sim": 0.61, "n": 1200}}},
    }


def _table(md: str, heading: str) -> list[list[str]]:
    """Cells of the first Markdown table after ``heading`` (header row first, separator dropped)."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        elif rows:
            break
    return [rows[0], *rows[2:]]


def test_markdown_has_the_table_5_2_layout():
    md = render_markdown(_results())
    table = _table(md, "## Results (layout of thesis Table 5.2)")
    # columns: only the settings present, in the canonical order, then Avg.
    assert table[0] == ["System", "Metric", "SSST", "UTE", "USUE", AVG]
    body = {(r[0], r[1]): r[2:] for r in table[1:]}
    # rows: system x metric, systems under test before the copy-source floor, metrics in Table 5.2 order
    assert [(r[0], r[1]) for r in table[1:]] == [
        (s, m) for s in ("s2s-zest", "copy-source") for m in ("Emo-Sim ↑", "Rate PCC ↑", "WER ↓", "Spk-Sim ↑")]
    assert body[("s2s-zest", "Emo-Sim ↑")] == ["0.70", "0.60", "0.50", "0.60"]
    # Avg. over the settings with a value: PCC None at UTE -> mean of 0.30 and 0.20
    assert body[("s2s-zest", "Rate PCC ↑")] == ["0.30", MISSING, "0.20", "0.25"]
    assert body[("s2s-zest", "WER ↓")] == ["6.00%", "8.00%", "9.00%", "7.67%"]
    # copy-source has no UTE entry and a NaN PCC: both "–", and Avg. only over what exists
    assert body[("copy-source", "Emo-Sim ↑")] == ["0.30", MISSING, "0.20", "0.25"]
    assert body[("copy-source", "Rate PCC ↑")] == ["0.10", MISSING, MISSING, "0.10"]
    assert body[("copy-source", "Spk-Sim ↑")] == ["0.99", MISSING, "0.98", f"{(0.99 + 0.98) / 2:.2f}"]
    # provenance header
    assert "- Model bundle: `/models/zest-bundle` (sha256 `" + "ab" * 32 + "`)" in md
    assert "- Pairs SSST: `pairs/SSST.jsonl` (1200 pairs, sha256 `" + "cd" * 32 + "`)" in md
    assert "- Backends: asr = faster-whisper:tiny.en, emotion = emotk-emotion, rate = whisper-words, " \
           "speaker = resemblyzer" in md
    assert "- Command: `emotk evaluate est --setting SSST`" in md
    counts = _table(md, "## Pairs scored")
    assert counts[1] == ["s2s-zest", "1200", "1000", "2000 (3 failed)"]
    assert counts[2] == ["copy-source", "1200", MISSING, "2000"]
    # noise: higher SNR first, only the measured metric
    noise = _table(md, "## Additive-noise robustness (noise added to the sources)")
    assert noise[1:] == [["s2s-zest@20dB", "Emo-Sim ↑", "0.61", "0.61"],
                         ["s2s-zest@10dB", "Emo-Sim ↑", "0.52", "0.52"]]
    matrix = _table(md, "### s2s-zest: vs source emotion")
    assert matrix[0] == ["source \\ reference", "angry", "happy", "neutral", "sad"]
    assert matrix[1] == ["angry", "0.20", "0.30", MISSING, "0.50"]


def test_csv_rows_are_long_format_with_averages():
    rows = flatten_rows(_results())
    zest_pcc = [r for r in rows if r["system"] == "s2s-zest" and r["metric"] == "rate_pcc"]
    assert [(r["setting"], r["value"], r["n"]) for r in zest_pcc] == [
        ("SSST", 0.30, 1200), ("UTE", None, 1000), ("USUE", 0.20, 2000), (AVG, pytest.approx(0.25), 3200)]
    cer = [r for r in rows if r["system"] == "s2s-zest" and r["metric"] == "cer"]
    assert [r["value"] for r in cer] == [2.5, None, 4.0, pytest.approx(3.25)]
    # copy-source: no UTE row at all, NaN -> None
    copy_pcc = [(r["setting"], r["value"]) for r in rows if r["system"] == "copy-source" and r["metric"] == "rate_pcc"]
    assert copy_pcc == [("SSST", 0.10), ("USUE", None), (AVG, 0.10)]
    assert [r["system"] for r in rows][-4:] == ["s2s-zest@20dB"] * 2 + ["s2s-zest@10dB"] * 2

    systems = {r["system"] for r in rows}
    assert systems == {"s2s-zest", "copy-source", "s2s-zest@20dB", "s2s-zest@10dB"}
    # 3 settings + Avg. x 5 metrics; 2 + Avg. x 5; noise: 1 + Avg. x emo_sim only
    assert len(rows) == 4 * 5 + 3 * 5 + 2 * 2


def test_write_est_report_files_are_deterministic_and_png_valid(tmp_path):
    a = write_est_report(_results(), tmp_path / "a")
    b = write_est_report(_results("reverse"), tmp_path / "b")
    for key in ("json", "csv", "markdown"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    # re-rendering from the written JSON gives the same files again
    again = write_est_report(json.loads(a["json"].read_text()), tmp_path / "c", plots=False)
    for key in ("json", "csv", "markdown"):
        assert again[key].read_bytes() == a[key].read_bytes(), key
    assert again["plots"] == []

    data = json.loads(a["json"].read_text())
    assert list(data) == sorted(data) and list(data["systems"]) == ["copy-source", "s2s-zest"]
    assert data["systems"]["copy-source"]["USUE"]["rate_pcc"] is None  # NaN is not JSON
    assert a["markdown"].name == "table.md" and a["markdown"].read_text() == render_markdown(_results())

    table = list(csv.reader(io.StringIO(a["csv"].read_text())))
    assert table[0] == ["system", "setting", "metric", "value", "n"]
    assert ["s2s-zest", "SSST", "wer", "6.0", "1200"] in table
    assert ["s2s-zest", "UTE", "rate_pcc", "", "1000"] in table
    avg = next(r for r in table if r[:3] == ["s2s-zest", AVG, "wer"])
    assert math.isclose(float(avg[3]), (6.0 + 8.0 + 9.0) / 3) and avg[4] == "4200"

    names = sorted(p.name for p in a["plots"])
    assert names == ["emo_sim_matrix_s2s-zest.png", "settings_emo_sim.png", "settings_rate_pcc.png",
                     "settings_spk_sim.png", "settings_wer.png"]
    for p in a["plots"]:
        data = p.read_bytes()
        assert p.parent == tmp_path / "a" and len(data) > 1000 and data[:8] == PNG_MAGIC
    assert not list((tmp_path / "a").glob(".*"))  # atomic writes leave no temporary files


def test_plots_only_for_measured_metrics_and_existing_matrices(tmp_path):
    results = {"systems": {"s2s-zest": {"SSST": {"emo_sim": 0.6, "wer": None, "n": 4, "n_failed": 0}}}}
    paths = write_est_report(results, tmp_path)
    assert [p.name for p in paths["plots"]] == ["settings_emo_sim.png"]
    md = paths["markdown"].read_text()
    assert "## Emotion-similarity matrices" not in md and "## Additive-noise" not in md
    assert "| s2s-zest | WER ↓ | – | – |" in md


@pytest.mark.parametrize("bad, message", [
    ({"systems": {}}, "'systems' is empty"),
    ({"rows": []}, "'systems' key"),
    ({"systems": {"z": {"SSST": {"wer": "7%"}}}}, "systems['z']['SSST']['wer'] is '7%', not a number"),
    ({"systems": {"z": {"SSST": {"emo_sim": 0.5, "n": -1}}}}, "systems['z']['SSST']['n'] is -1, not a count"),
    ({"systems": {"z": {"SSST": 0.5}}}, "systems['z']['SSST'] must be a dict"),
    ({"systems": {"z": {"SSST": {"emo_sim": 0.5}}}, "matrices": {"z": {"labels": ["a", "b"], "vs_reference": [[1.0]]}}},
     "matrices['z']['vs_reference'] must be 2 x 2"),
])
def test_bad_results_are_one_line_data_errors(bad, message, tmp_path):
    with pytest.raises(DataError) as err:
        write_est_report(bad, tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_markdown_table_escapes_and_checks_widths():
    text = markdown_table(["a", "b"], [["x|y", "1"]])
    assert text == "| a | b |\n|:--|--:|\n| x\\|y | 1 |\n"
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])
