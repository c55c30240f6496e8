"""The report as one self-contained HTML page: inline styles and script, images as data URIs, no network.

`render(content)` turns `pipeline.report.content.report_content` into the page: a sortable
leaderboard (click a column header), then one collapsible section per head (metrics per split,
confusion matrix as a heat map up to `MAX_MATRIX_CLASSES` classes, the most-confused pairs,
per-class accuracy worst first, the top losses as thumbnails), the visualisations made for the
heads, and the provenance of the features. Every text is escaped.
"""

from __future__ import annotations

import html
import json

from pipeline.heads.caveats import caveat_notes
from pipeline.report.audit_section import render_audit

#: Largest confusion matrix drawn as a heat map; larger ones are summarised by their confused pairs.
MAX_MATRIX_CLASSES = 40
#: Per-class accuracies listed per head (worst first).
PER_CLASS_SHOWN = 25
_PERCENT = 100
#: Characters of a class name shown beside a matrix row (the full name is its tooltip).
_LABEL_CHARACTERS = 18

_STYLE = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d2330;
       background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c7cedb; }
main { padding: 8px 28px 40px; max-width: 1280px; }
h2 { margin-top: 28px; font-size: 18px; }
table { border-collapse: collapse; background: #fff; margin: 8px 0 16px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e6eb; text-align: left; white-space: nowrap; }
th { background: #eef0f4; font-weight: 600; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa3b2; font-size: 11px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
details { background: #fff; border: 1px solid #e3e6eb; border-radius: 6px; margin: 10px 0; padding: 6px 14px; }
summary { cursor: pointer; font-weight: 600; padding: 6px 0; }
.muted { color: #6b7487; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 176px; background: #fafbfc; border: 1px solid #e3e6eb; border-radius: 6px; padding: 8px;
        font-size: 12px; }
.card img { width: 160px; height: 160px; object-fit: contain; background: #eef0f4; display: block; }
.card .wrong { color: #b4232c; font-weight: 600; }
.card.misclassified { border-color: #b4232c; box-shadow: inset 0 0 0 1px #b4232c; }
.scroll { overflow-x: auto; }
.visual img { max-width: 100%; border: 1px solid #e3e6eb; background: #fff; }
.bar { display: inline-block; height: 10px; background: #4f7cc9; vertical-align: middle; }
table.matrix td { width: 22px; height: 22px; padding: 0; text-align: center; font-size: 10px; border: 1px solid #fff; }
table.matrix th { font-size: 11px; padding: 2px 4px; }
.caveat { background: #fff6e0; border-left: 4px solid #d99a00; padding: 6px 10px; max-width: 980px; }
.flex { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (header, column) {
    header.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var descending = header.getAttribute("data-order") !== "descending";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("data-order"); });
      header.setAttribute("data-order", descending ? "descending" : "ascending");
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def render(content: dict) -> str:
    """The whole page for `content` (see the module doc)."""
    cache = content["cache"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{_e(content['title'])}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<header><h1>{_e(content['title'])}</h1><p>{_e(cache['dataset']['name'])} · "
        f"{_split_text(cache['dataset']['split_sizes'])} · {len(content['leaderboard'])} heads · "
        f"generated {_e(content['generated'])}</p></header>", "<main>",
        "<h2>Leaderboard</h2>",
        '<p class="muted">Ranked by validation top-1 (chosen on validation only); test is each head\'s honest, '
        "once-scored estimate. Click a column to sort.</p>",
        _leaderboard(content["leaderboard"]),
        *[_caveat(text) for text in caveat_notes(content["leaderboard"])],
        *[_search(search) for search in content.get("searches", [])],
        *([render_audit(content["audit"])] if content.get("audit") else []),
        "<h2>Heads</h2>",
        *[_head(head) for head in content["heads"]],
    ]
    if content["visuals"]:
        parts += ["<h2>Visualisations</h2>", *[_visual(visual) for visual in content["visuals"]]]
    parts += ["<h2>Provenance</h2>", _provenance(cache), "</main>", f"<script>{_SCRIPT}</script>", "</body>",
              "</html>"]
    return "\n".join(parts) + "\n"


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _number(value, digits: int = 3) -> str:
    if value is None:
        return '<td class="num" data-value="-1">-</td>'
    value = float(value) + 0.0  # no "-0.000"
    return f'<td class="num" data-value="{value:.6f}">{value:.{digits}f}</td>'


def _text_cell(value) -> str:
    return f'<td data-value="{_e(value)}">{_e(value)}</td>'


def _file_name(relpath: str) -> str:
    return relpath.rsplit("/", 1)[-1]


def _split_text(sizes: dict) -> str:
    return ", ".join(f"{split} {count}" for split, count in sizes.items() if count)


def _leaderboard(rows: list[dict]) -> str:
    header = ("<tr><th>head</th><th>kind</th><th>params</th><th>valid top-1</th><th>test top-1</th>"
              "<th>test top-5</th><th>test per-class</th><th>test macro F1</th><th>fit s</th></tr>")
    body = "".join(
        "<tr>" + _text_cell(row["name"]) + _text_cell(row["kind"]) + _text_cell(row["params"])
        + _number(row["valid_top1"]) + _number(row["test_top1"]) + _number(row["test_top5"])
        + _number(row["test_mean_per_class_accuracy"]) + _number(row["test_macro_f1"])
        + _number(row["fit_seconds"], 2) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="sortable" id="leaderboard"><thead>{header}</thead>'
            f"<tbody>{body}</tbody></table></div>")


def _search(search: dict) -> str:
    """One `search` record: the winner, how it was chosen, and every candidate on validation."""
    valid, test = search.get("winner_valid") or {}, search.get("winner_test") or {}
    selection = search.get("selection") or {}
    body = "".join("<tr>" + _text_cell(row["name"]) + _text_cell(row["rung"]) + _number(row["valid_top1"])
                   + _number(row["valid_mean_per_class_accuracy"]) + _text_cell(row["status"])
                   + _text_cell(row["note"] or "") + "</tr>" for row in search["candidates"])
    return (f"<h2>Search: {_e(search['winner'])}</h2>"
            f'<p class="muted">Chosen on validation only ({_e(search["valid_images"])} images; '
            f"{_e(selection.get('rule'))}, one standard error {_e(selection.get('standard_error'))}). Winner: valid "
            f"top-1 {_e(valid.get('top1'))}, test top-1 {_e(test.get('top1'))} (test scored once, for the winner "
            f"only). Head {_e(search['winner_head'])}; record {_e(search['record'])}.</p>"
            '<div class="scroll"><table class="sortable"><thead><tr><th>candidate</th><th>rung</th>'
            "<th>valid top-1</th><th>valid per-class</th><th>status</th><th>note</th></tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _metrics_table(metrics: dict) -> str:
    header = "<tr><th>split</th><th>n</th><th>top-1</th><th>top-5</th><th>per-class</th><th>macro F1</th>" \
             "<th>log loss</th></tr>"
    body = "".join(
        f"<tr><td>{_e(split)}</td>" + _number(values.get("n"), 0) + _number(values.get("top1"))
        + _number(values.get("top5")) + _number(values.get("mean_per_class_accuracy"))
        + _number(values.get("macro_f1")) + _number(values.get("log_loss")) + "</tr>"
        for split, values in metrics.items())
    return f"<table>{header}{body}</table>"


def _matrix(matrix: list, names: list) -> str:
    """The confusion matrix over the classes the split holds or the head predicted, as a heat map."""
    shown = [i for i in range(len(names)) if sum(matrix[i]) or sum(row[i] for row in matrix)]
    if len(shown) > MAX_MATRIX_CLASSES:
        return (f'<p class="muted">{len(shown)} classes: too many for a readable matrix here; the most-confused '
                "pairs are listed, and the full matrix is the head's confusion PNG.</p>")
    header = "<tr><th>true \\ predicted</th>" + "".join(f'<th title="{_e(names[i])}">{i}</th>' for i in shown)
    rows = []
    for i in shown:
        row = [matrix[i][j] for j in shown]
        total = sum(row) or 1
        cells = []
        for value in row:
            share = value / total
            colour = f"rgba(79,124,201,{share:.3f})"
            ink = "#fff" if share > 0.5 else "#1d2330"
            cells.append(f'<td style="background:{colour};color:{ink}" title="{value}">{value or ""}</td>')
        rows.append(f'<tr><th title="{_e(names[i])}">{i} {_e(names[i][:_LABEL_CHARACTERS])}</th>{"".join(cells)}</tr>')
    return f'<table class="matrix">{header}</tr>{"".join(rows)}</table>'


def _pairs(pairs: list) -> str:
    if not pairs:
        return '<p class="muted">No confusions.</p>'
    rows = "".join(f"<tr><td>{_e(p['true'])}</td><td>{_e(p['predicted'])}</td>" + _number(p["images"], 0)
                   + _number(p["share_of_true"] * _PERCENT, 1) + "</tr>" for p in pairs)
    return ("<table><tr><th>true class</th><th>predicted as</th><th>images</th><th>% of the true class</th></tr>"
            f"{rows}</table>")


def _per_class(rows: list) -> str:
    shown = rows[:PER_CLASS_SHOWN]
    body = "".join(f"<tr><td>{_e(r['class'])}</td>" + _number(r["accuracy"])
                   + f'<td><span class="bar" style="width:{r["accuracy"] * _PERCENT:.0f}px"></span></td></tr>'
                   for r in shown)
    more = f'<p class="muted">{len(rows) - len(shown)} more classes.</p>' if len(rows) > len(shown) else ""
    return f"<table><tr><th>class (worst first)</th><th>accuracy</th><th></th></tr>{body}</table>{more}"


def _losses(head: dict) -> str:
    if "top_losses" not in head:
        return f'<p class="muted">{_e(head.get("top_losses_note", ""))}</p>'
    cards = []
    for item in head["top_losses"]:
        image = (f'<img src="{item["thumbnail"]}" alt="{_e(item["path"])}">' if item["thumbnail"]
                 else '<div class="muted" style="height:160px">image not on disk</div>')
        verdict = "wrong" if item["true"] != item["predicted"] else ""
        card_class = "card misclassified" if verdict else "card"
        name = f'<div title="{_e(item["path"])}">{_e(_file_name(item["path"]))}</div>'
        cards.append(f'<div class="{card_class}">{image}{name}'
                     f"<div>true: {_e(item['true'])} ({item['probability_true']:.2f})</div>"
                     f'<div class="{verdict}">predicted: {_e(item["predicted"])} '
                     f"({item['probability_predicted']:.2f})</div></div>")
    return f'<div class="grid top-losses">{"".join(cards)}</div>'


def _head(head: dict) -> str:
    final = head.get("final_split")
    title = f"{_e(head['name'])} <span class='muted'>{_e(head['kind'])}"
    if head.get("target") not in (None, "label"):
        title += f", target {_e(head['target'])}"
    title += "</span>"
    parts = [f"<details><summary>{title}</summary>", _metrics_table(head["metrics"]),
             *[_caveat(text) for text in head.get("caveats", ())]]
    if head.get("tta"):
        parts.append(f"<p>Test-time augmentation: mean of the probabilities over {head['tta']['views_per_image']:g} "
                     f"cached views per image (view set {_e(head['tta']['view_set'])}):</p>"
                     + _metrics_table(head["tta"]["metrics"]))
    if head.get("members"):
        used = ", ".join(f"{_e(m['name'])} {m['weight']:.1f}" for m in head["members"])
        parts.append(f"<p>Fused: {_e(head['hyperparameters'].get('method'))} ({used}); best single backbone on "
                     f"validation: {_e(head['hyperparameters'].get('best_single'))}.</p>")
    for target, by_split in head.get("metrics_by_target", {}).items():
        parts.append(f"<p>Target <b>{_e(target)}</b>:</p>" + _metrics_table(by_split))
    for target, implied in head.get("implied_targets", {}).items():
        row = implied.get(final or "test", {})
        extra = (f", predicted directly {row['accuracy_direct']:.3f}, consistent {row['consistency']:.3f}"
                 if "consistency" in row else "")
        if row:
            parts.append(f"<p>{_e(target)} from the {_e(implied['implied_by'])} prediction ({_e(final)}): "
                         f"accuracy {row['accuracy_from_primary']:.3f}{extra}.</p>")
    if final is not None:
        parts += [f"<h3>Confusions ({_e(final)})</h3>", '<div class="flex">',
                  _matrix(head["confusion_matrix"], head["class_names"]),
                  f"<div>{_pairs(head['most_confused'])}{_per_class(head['per_class_accuracy'])}</div></div>",
                  f"<h3>Top losses ({_e(final)}: the images this head got most wrong)</h3>", _losses(head)]
    parts.append("</details>")
    return "\n".join(parts)


def _caveat(text: str) -> str:
    """A split whose figures mean less than they seem (`pipeline.heads.caveats`)."""
    return f'<p class="caveat"><b>Caveat:</b> {_e(text)}</p>'


def _visual(visual: dict) -> str:
    images = "".join(f'<img src="{uri}" alt="{_e(visual["title"])}">' for uri in visual["images"])
    summary = f"<p>{_e(visual['summary'])}</p>" if visual.get("summary") else ""
    command = f'<p class="muted"><code>{_e(visual["command"])}</code></p>' if visual.get("command") else ""
    notes = "".join(f'<p class="muted">{_e(note)}</p>' for note in visual.get("notes", []))
    return f'<div class="visual"><h3>{_e(visual["title"])}</h3>{summary}{command}{images}{notes}</div>'


def _provenance(cache: dict) -> str:
    weights, dataset = cache["weights"], cache["dataset"]
    rows = [("cache file", cache["file"]), ("feature key", cache["feature_key"]),
            ("backbone / layer", f"{cache['backbone']} / {cache['layer']}"),
            ("features", "x".join(map(str, cache["feature_shape"])) + f" per image, {cache['rows']} rows"),
            ("input", f"{cache['input_size']} px, resize {cache['resize']}, preprocessing {cache['preprocessing']}"),
            ("precision / storage", f"{cache['precision']} / {cache['store_dtype']}"),
            ("weights", weights.get("description")), ("weights fingerprint", cache["weights_fingerprint"]),
            ("origin", cache["origin"].get("kind")),
            ("dataset", f"{dataset['name']} ({dataset['layout']} layout) at {dataset['root']}"),
            ("images", _split_text(cache["dataset"]["split_sizes"])), ("failures", len(cache["failures"])),
            ("created / updated", f"{cache['created']} / {cache['updated']}"),
            ("versions", json.dumps(cache["versions"]))]
    table = "".join(f"<tr><th>{_e(k)}</th><td style='white-space:normal'>{_e(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{_e(note)}</li>" for note in cache["dataset"]["notes"])
    failures = "".join(f"<li>{_e(f['path'])}: {_e(f['reason'])}</li>" for f in cache["failures"])
    classes = _class_counts(cache["dataset"]["class_counts"])
    return (f"<table>{table}</table>"
            + (f"<details><summary>Notes</summary><ul>{notes}</ul></details>" if notes else "")
            + (f"<details><summary>Failures</summary><ul>{failures}</ul></details>" if failures else "")
            + f"<details><summary>Images per class and split</summary>{classes}</details>")


def _class_counts(counts: dict) -> str:
    splits = list(counts)
    if not splits:
        return ""
    names = list(counts[splits[0]])
    header = "<tr><th>class</th>" + "".join(f"<th>{_e(s)}</th>" for s in splits) + "</tr>"
    body = "".join("<tr>" + _text_cell(name) + "".join(_number(counts[s][name], 0) for s in splits) + "</tr>"
                   for name in names)
    return f'<table class="sortable"><thead>{header}</thead><tbody>{body}</tbody></table>'
