"""Emotion-style-transfer results -> ``results.json`` + ``results.csv`` + ``table.md`` (thesis Table 5.2) + PNG plots.

The input is the dict that ``emotk evaluate est`` builds::

    {"provenance": {"bundle", "bundle_sha256", "pairs": {SETTING: {"path", "sha256", "count"}},
                    "backends": {"emotion", "asr", "speaker", "rate"}, "versions": {...}, "command", "created"},
     "systems":  {SYSTEM: {SETTING: {"emo_sim", "wer", "cer", "spk_sim", "rate_pcc", "n", "n_failed"}}},
     "matrices": {SYSTEM: {"labels": [E], "vs_reference": [[E x E]], "vs_source": [[E x E]]}},   (optional)
     "noise":    {"SYSTEM@20dB": {SETTING: {...same as systems...}}}}                              (optional)

Metric values are floats or None (not measured); WER/CER are percentages. Table 5.2 has one row per
system x metric (Emo-Sim, word speaking-rate PCC, WER, Spk-Sim) and one column per setting present, in the
canonical order SSST, SSDT, DSST, DSDT, UTE, USS, USUE (then the any-to-any A2A column), plus "Avg." = the mean
over the settings present for that row (None ignored; A2A is not a setting of Table 5.2 and stays out of the
average unless it is the only column). The Markdown and CSV helpers here are shared with :mod:`emotk.eval.aggregate`.
Every write is atomic; the same input gives byte-identical JSON, CSV and Markdown.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from emotk.core.io import atomic_path, atomic_write_text, canonical_json
from emotk.errors import DataError
from emotk.eval.baselines import BASELINES  # the floors of every table: listed after the systems under test
from emotk.eval.pairs import ANY_TO_ANY, SETTINGS  # the canonical setting order

#: metric key -> (label, higher is better); the order of the rows of Table 5.2
TABLE_METRICS: dict[str, tuple[str, bool]] = {
    "emo_sim": ("Emo-Sim", True),
    "rate_pcc": ("Rate PCC", True),
    "wer": ("WER", False),
    "spk_sim": ("Spk-Sim", True),
}
#: every metric a results entry may hold (CSV/JSON carry them all; CER is not a row of Table 5.2)
METRICS = ("emo_sim", "rate_pcc", "wer", "cer", "spk_sim")
PERCENT_METRICS = frozenset({"wer", "cer"})
AVG = "Avg."
MISSING = "–"
CSV_HEADER = ("system", "setting", "metric", "value", "n")


# ---- shared table writers (also used by emotk.eval.aggregate) ---------------------------------------------------
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table.

    header: column titles; rows: cell strings (``|`` is escaped); align: per column ``"l"`` or ``"r"``
    (default: first column left, the others right). Returns the table text, one line per row, ending in a newline.
    """
    align = list(align) if align is not None else ["l"] + ["r"] * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"{len(align)} alignments for {len(header)} columns")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns")
        out.append(line(row))
    return "\n".join(out) + "\n"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text (``\\n`` line ends, minimal quoting) of ``header`` and ``rows``; None -> empty cell, floats in
    their shortest exact form (``repr``), so the file is deterministic and lossless."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def write_tables(out_dir: str | os.PathLike, obj: Any, csv_body: str, markdown: str) -> dict[str, Path]:
    """Write ``obj`` as ``results.json`` (sorted keys, 2-space indent, no NaN), ``csv_body`` as ``results.csv`` and
    ``markdown`` as ``table.md`` under ``out_dir``, each atomically; returns ``{"json", "csv", "markdown"}`` paths."""
    out = Path(out_dir)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "table.md"}
    # through canonical_json first: Paths and numpy values become JSON the way every emotk hash sees them;
    # the file itself keeps the sorted keys but is indented for people
    normal = json.loads(canonical_json(obj))
    try:
        text = json.dumps(normal, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as e:
        raise DataError(f"{paths['json']}: cannot write NaN/inf as JSON ({e})") from None
    atomic_write_text(paths["json"], text)
    atomic_write_text(paths["csv"], csv_body)
    atomic_write_text(paths["markdown"], markdown)
    return paths


def slug(name: str) -> str:
    """A file-name-safe form of a system/metric name (``s2s-zest@20dB`` -> ``s2s-zest_20dB``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "_"


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is None/NaN/inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---- validation ------------------------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_section(results: Mapping[str, Any], section: str) -> None:
    systems = results[section]
    if not isinstance(systems, Mapping):
        raise DataError(f"results: '{section}' must map system names to settings, got {type(systems).__name__}")
    for system, settings in systems.items():
        if not isinstance(settings, Mapping):
            raise DataError(f"results: {section}['{system}'] must map settings to metrics")
        for setting, entry in settings.items():
            where = f"{section}['{system}']['{setting}']"
            if not isinstance(entry, Mapping):
                raise DataError(f"results: {where} must be a dict of metrics")
            for key in METRICS:
                v = entry.get(key)
                if v is not None and not _is_number(v):
                    raise DataError(f"results: {where}['{key}'] is {v!r}, not a number or null")
            for key in ("n", "n_failed"):
                v = entry.get(key)
                if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                    raise DataError(f"results: {where}['{key}'] is {v!r}, not a count")


def _check_matrices(results: Mapping[str, Any]) -> None:
    for system, m in results.get("matrices", {}).items():
        if not isinstance(m, Mapping) or not isinstance(m.get("labels"), list) or not m["labels"]:
            raise DataError(f"results: matrices['{system}'] needs a non-empty 'labels' list")
        k = len(m["labels"])
        for name in ("vs_reference", "vs_source"):
            rows = m.get(name)
            if rows is None:
                continue
            if (not isinstance(rows, list) or len(rows) != k
                    or any(not isinstance(r, list) or len(r) != k for r in rows)):
                raise DataError(f"results: matrices['{system}']['{name}'] must be {k} x {k} "
                                f"(one row/column per label)")
            for r in rows:
                for v in r:
                    if v is not None and not _is_number(v):
                        raise DataError(f"results: matrices['{system}']['{name}'] holds {v!r}, not a number")


def check_results(results: Any) -> None:
    """Raise DataError (one line naming the key) unless ``results`` has the shape described in the module doc."""
    if not isinstance(results, Mapping) or "systems" not in results:
        raise DataError("results: expected a dict with a 'systems' key (SYSTEM -> SETTING -> metrics)")
    if not results["systems"]:
        raise DataError("results: 'systems' is empty; nothing to report")
    _check_section(results, "systems")
    if results.get("noise") is not None:
        _check_section(results, "noise")
    if results.get("matrices") is not None:
        if not isinstance(results["matrices"], Mapping):
            raise DataError("results: 'matrices' must map system names to matrices")
        _check_matrices(results)
    prov = results.get("provenance")
    if prov is not None and not isinstance(prov, Mapping):
        raise DataError("results: 'provenance' must be a dict")


def _clean(obj: Any) -> Any:
    """A copy of ``obj`` with NaN/inf replaced by None (JSON has no NaN) and tuples as lists."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if type(obj).__module__ == "numpy":  # numpy scalars and arrays
        return _clean(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


# ---- table model -----------------------------------------------------------------------------------------------------
def system_order(names: Iterable[str]) -> list[str]:
    """Systems under test sorted by name, then the baselines (world-baseline, copy-source) as floors; noise variants
    (``SYSTEM@20dB``) follow their system's order, higher SNR first."""
    def key(name: str) -> tuple:
        base, _, snr = name.partition("@")
        rank = BASELINES.index(base) + 1 if base in BASELINES else 0
        m = re.match(r"^(-?\d+(?:\.\d+)?)\s*dB$", snr)
        return (rank, base, 0 if not snr else 1, -float(m.group(1)) if m else 0.0, snr)

    return sorted(set(names), key=key)


def settings_present(section: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The settings that occur for any system: canonical ones in the thesis order, then others sorted."""
    found = {s for settings in section.values() for s in settings}
    return [s for s in SETTINGS if s in found] + sorted(found - set(SETTINGS))


def averaged(settings: Sequence[str]) -> list[bool]:
    """Which of ``settings`` enter a row's Avg.: all but the any-to-any A2A column (not a setting of Table 5.2),
    unless it is the only one."""
    only = all(s == ANY_TO_ANY for s in settings)
    return [only or s != ANY_TO_ANY for s in settings]


def row_average(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None/NaN; None when there are none."""
    vals = [v for v in (finite_or_none(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _value(section: Mapping[str, Any], system: str, setting: str, metric: str) -> float | None:
    entry = section.get(system, {}).get(setting)
    return finite_or_none(entry.get(metric)) if entry is not None else None


def flatten_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows ``{"system", "setting", "metric", "value", "n"}`` of "systems" then "noise".

    Per system (see :func:`system_order`): each setting present (thesis order) and then ``"Avg."``; per setting
    each metric of :data:`METRICS` that any entry of the section holds. ``value``: float or None; ``n``: pairs
    scored for a setting, and for ``Avg.`` the pairs of the settings that entered the mean.
    """
    results = _clean(results)
    check_results(results)
    rows: list[dict[str, Any]] = []
    for section_name in ("systems", "noise"):
        section = results.get(section_name) or {}
        if not section:
            continue
        settings = settings_present(section)
        metrics = [m for m in METRICS if any(m in e for st in section.values() for e in st.values())]
        for system in system_order(section):
            for metric in metrics:
                used_n, used = 0, []
                for setting, in_avg in zip(settings, averaged(settings)):
                    entry = section[system].get(setting)
                    if entry is None:
                        continue
                    value = finite_or_none(entry.get(metric))
                    rows.append({"system": system, "setting": setting, "metric": metric, "value": value,
                                 "n": entry.get("n")})
                    if value is not None and in_avg:
                        used.append(value)
                        used_n += entry.get("n") or 0
                rows.append({"system": system, "setting": AVG, "metric": metric, "value": row_average(used),
                             "n": used_n if used else None})
    return rows


def format_value(metric: str, value: float | None) -> str:
    """Cell text: similarities/PCC with 2 decimals, WER/CER with 2 decimals and ``%``, ``–`` for missing."""
    value = finite_or_none(value)
    if value is None:
        return MISSING
    return f"{value:.2f}%" if metric in PERCENT_METRICS else f"{value:.2f}"


def metric_label(metric: str) -> str:
    """``"emo_sim"`` -> ``"Emo-Sim ↑"``; ``"wer"`` -> ``"WER ↓"``."""
    if metric in TABLE_METRICS:
        label, up = TABLE_METRICS[metric]
    elif metric in PERCENT_METRICS:
        label, up = metric.upper(), False
    else:
        label, up = metric, True
    return f"{label} {'↑' if up else '↓'}"


def table52(section: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = tuple(TABLE_METRICS)
            ) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Table 5.2 layout: ``System | Metric | SETTING... | Avg.``; rows = system x metric
    (``metrics`` in order), cells formatted by :func:`format_value`."""
    settings = settings_present(section)
    header = ["System", "Metric", *settings, AVG]
    rows = []
    for system in system_order(section):
        for metric in metrics:
            values = [_value(section, system, s, metric) for s in settings]
            avg = row_average(v for v, keep in zip(values, averaged(settings)) if keep)
            rows.append([system, metric_label(metric), *(format_value(metric, v) for v in values),
                         format_value(metric, avg)])
    return header, rows


def _counts_table(section: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    settings = settings_present(section)
    rows = []
    for system in system_order(section):
        cells = []
        for s in settings:
            entry = section[system].get(s)
            if entry is None:
                cells.append(MISSING)
                continue
            n, failed = entry.get("n"), entry.get("n_failed") or 0
            cell = MISSING if n is None else str(n)
            cells.append(f"{cell} ({failed} failed)" if failed else cell)
        rows.append([system, *cells])
    return ["System", *settings], rows


def _provenance_lines(prov: Mapping[str, Any]) -> list[str]:
    lines = []
    if prov.get("command"):
        lines.append(f"- Command: `{prov['command']}`")
    if prov.get("created"):
        lines.append(f"- Created: {prov['created']}")
    if prov.get("bundle") or prov.get("bundle_sha256"):
        lines.append(f"- Model bundle: `{prov.get('bundle', '?')}` (sha256 `{prov.get('bundle_sha256', '?')}`)")
    pairs = prov.get("pairs") or {}
    for setting in [s for s in SETTINGS if s in pairs] + sorted(set(pairs) - set(SETTINGS)):
        p = pairs[setting] or {}
        lines.append(f"- Pairs {setting}: `{p.get('path', '?')}` ({p.get('count', '?')} pairs, "
                     f"sha256 `{p.get('sha256', '?')}`)")
    backends = prov.get("backends") or {}
    if backends:
        lines.append("- Backends: " + ", ".join(f"{k} = {backends[k]}" for k in sorted(backends)))
    versions = prov.get("versions") or {}
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {versions[k]}" for k in sorted(versions)))
    for key in sorted(set(prov) - {"command", "created", "bundle", "bundle_sha256", "pairs", "backends",
                                   "versions"}):
        value = prov[key]
        text = canonical_json(value) if isinstance(value, (Mapping, list)) else str(value)
        lines.append(f"- {key}: {text}")
    return lines


def _matrix_table(labels: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    header = ["source \\ reference", *labels]
    body = [[str(lab), *(format_value("emo_sim", v) for v in row)] for lab, row in zip(labels, rows)]
    return markdown_table(header, body)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The ``table.md`` text: provenance header, Table 5.2 (systems), pairs scored, noise robustness and the
    emotion-similarity matrices when present. Deterministic for the same ``results``."""
    results = _clean(results)
    check_results(results)
    out = ["# Emotion style transfer evaluation", ""]
    prov = _provenance_lines(results.get("provenance") or {})
    if prov:
        out += [*prov, ""]
    header, rows = table52(results["systems"])
    out += ["## Results (layout of thesis Table 5.2)", "",
            "Rows: system x metric; columns: evaluation settings and their average (Avg., over the settings "
            "with a value; the any-to-any A2A column is not averaged unless it is the only one). "
            "Emo-Sim: reference vs converted; Spk-Sim: source vs converted; Rate PCC: word "
            "speaking rate, reference vs converted; WER: converted vs source transcript.", "",
            markdown_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2))]
    header, rows = _counts_table(results["systems"])
    out += ["## Pairs scored", "", markdown_table(header, rows)]
    if results.get("noise"):
        measured = [m for m in TABLE_METRICS
                    if any(finite_or_none(e.get(m)) is not None for st in results["noise"].values()
                           for e in st.values())]
        header, rows = table52(results["noise"], measured or tuple(TABLE_METRICS))
        out += ["## Additive-noise robustness (noise added to the sources)", "",
                markdown_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2))]
        header, rows = _counts_table(results["noise"])
        out += ["### Pairs scored with noise", "", markdown_table(header, rows)]
    matrices = results.get("matrices") or {}
    if matrices:
        out += ["## Emotion-similarity matrices", "",
                "Cell (row i, column j): mean Emo-Sim of sources of emotion i converted with references of "
                "emotion j.", ""]
        for system in system_order(matrices):
            m = matrices[system]
            for name, title in (("vs_reference", "vs reference emotion"), ("vs_source", "vs source emotion")):
                if m.get(name) is not None:
                    out += [f"### {system}: {title}", "", _matrix_table(m["labels"], m[name])]
    return "\n".join(out).rstrip("\n") + "\n"


# ---- plots -----------------------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    # Object-oriented Agg canvas: no pyplot, so a user's interactive backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    return path


def matrix_png(system: str, matrix: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Heat map(s) of one system's emotion-similarity matrices (``vs_reference`` and/or ``vs_source``, each
    ``(E, E)``, rows = source emotion, columns = reference emotion) with the value in every cell; returns ``path``."""
    import numpy as np

    panels = [(n, t) for n, t in (("vs_reference", "vs reference"), ("vs_source", "vs source"))
              if matrix.get(n) is not None]
    labels = [str(x) for x in matrix["labels"]]
    k = len(labels)
    size = max(3.5, 0.7 * k + 2.0)
    fig = _figure(size * len(panels) + 0.5, size)
    for i, (name, title) in enumerate(panels):
        m = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix[name]], dtype=np.float64)
        ax = fig.add_subplot(1, len(panels), i + 1)
        finite = m[np.isfinite(m)]
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=lo, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels=labels)
        ax.set_xlabel("reference emotion")
        ax.set_ylabel("source emotion")
        ax.set_title(f"{system}: Emo-Sim {title}")
        mid = (lo + 1.0) / 2
        for r in range(k):
            for c in range(k):
                v = m[r, c]
                ax.text(c, r, MISSING if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                        fontsize=8, color="black" if not np.isfinite(v) or v > mid else "white")
    fig.tight_layout()
    return _save_png(fig, Path(path))


def settings_png(results: Mapping[str, Any], metric: str, path: str | os.PathLike) -> Path:
    """Grouped bars of ``metric`` per setting (and Avg.), one bar per system; a missing value draws no bar."""
    import numpy as np

    section = results["systems"]
    settings = settings_present(section)
    groups = [*settings, AVG]
    systems = system_order(section)
    fig = _figure(max(5.0, 1.1 * len(groups) + 2.0), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(groups))
    for i, system in enumerate(systems):
        values = [_value(section, system, s, metric) for s in settings]
        values.append(row_average(v for v, keep in zip(values, averaged(settings)) if keep))
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=system)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate(format_value(metric, v), (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom" if v >= 0 else "top", fontsize=6)
    ax.set_xticks(x, labels=groups)
    ax.set_ylabel(metric_label(metric) + (" (%)" if metric in PERCENT_METRICS else ""))
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{metric_label(metric)} per setting")
    fig.tight_layout()
    return _save_png(fig, Path(path))


# ---- entry point -----------------------------------------------------------------------------------------------------
def write_est_report(results: Mapping[str, Any], out_dir: str | os.PathLike, plots: bool = True) -> dict[str, Any]:
    """Write the EST report of ``results`` under ``out_dir`` (created if needed; existing report files are
    replaced, as they are derived from ``results``).

    Files: ``results.json`` (the results, sorted keys, NaN -> null), ``results.csv`` (:func:`flatten_rows`),
    ``table.md`` (:func:`render_markdown`) and, with ``plots``, ``emo_sim_matrix_<system>.png`` per system with
    matrices and ``settings_<metric>.png`` per Table-5.2 metric that has a value. Returns
    ``{"json": Path, "csv": Path, "markdown": Path, "plots": [Path, ...]}``.
    """
    clean = _clean(results)
    check_results(clean)
    rows = flatten_rows(clean)
    body = csv_text(CSV_HEADER, ([r[k] for k in CSV_HEADER] for r in rows))
    paths: dict[str, Any] = write_tables(out_dir, clean, body, render_markdown(clean))
    paths["plots"] = []
    if plots:
        out = Path(out_dir)
        for system in system_order(clean.get("matrices") or {}):
            paths["plots"].append(matrix_png(system, clean["matrices"][system],
                                             out / f"emo_sim_matrix_{slug(system)}.png"))
        section = clean["systems"]
        for metric in TABLE_METRICS:
            if any(finite_or_none(e.get(metric)) is not None for st in section.values() for e in st.values()):
                paths["plots"].append(settings_png(clean, metric, out / f"settings_{metric}.png"))
    return paths
