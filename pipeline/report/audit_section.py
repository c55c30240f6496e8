"""The report's audit section: what `audit` found, the leakage-aware scores and the map, self-contained.

`audit_content(cache_path, info)` gathers the cache's current audit record (`pipeline.audit.record`)
as JSON-able values: the findings with thumbnails, the leakage-aware test scores of the heads fitted
now, and the map's points with small thumbnails (flagged images first, up to `MAP_THUMBNAILS`).
`render_audit(section)` draws it: tables, and the map on a canvas with its own inline script (no
network): points coloured by class, flagged points ringed, hover or click shows the thumbnail and
label, and a class box highlights the classes whose names match.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from pipeline.audit.leakage import leakage_aware_scores
from pipeline.audit.record import read_record
from pipeline.cache.format import CacheInfo
from pipeline.data.phash import HASH_BITS
from pipeline.report.thumbnails import thumbnail_uri

#: Findings listed per kind, their thumbnails' side, and the map: thumbnails embedded and their side.
LISTED = 24
LIST_PIXELS = 120
MAP_THUMBNAILS = 2000
MAP_PIXELS = 96
#: Map point fields (see `pipeline.audit.run._map`): x, y, class index, relpath, split, flags.
_PATH, _FLAGS = 3, 5


def audit_content(cache_path: Path, info: CacheInfo) -> dict:
    """The section's values, or {"note": why} when the cache has no current audit."""
    record, why = read_record(info)
    if record is None:
        return {"note": why}
    root = info.data_root

    def thumb(relpath, pixels=LIST_PIXELS):
        path = root / relpath
        return thumbnail_uri(path, pixels) if path.is_file() else None

    pairs = [{**pair, "thumbnails": [thumb(pair["a"]), thumb(pair["b"])]}
             for pair in record.get("near_duplicates", [])[:LISTED]]
    issues = [{**issue, "thumbnail": thumb(issue["path"])} for issue in record.get("label_issues", [])[:LISTED]]
    far = [{**outlier, "thumbnail": thumb(outlier["path"])} for outlier in record.get("outliers", [])[:LISTED]]
    chart = record.get("map") or {}
    points = chart.get("points", [])
    order = sorted(range(len(points)), key=lambda i: (not points[i][_FLAGS], i))[:MAP_THUMBNAILS]
    thumbnails = {}
    for i in order:
        uri = thumb(points[i][_PATH], MAP_PIXELS)
        if uri:
            thumbnails[str(i)] = uri
    return {"images": record.get("images"), "threshold": record.get("near_duplicate_similarity"),
            "max_hash_distance": record.get("max_hash_distance"),
            "counts": {"near_duplicates": len(record.get("near_duplicates", [])),
                       "cross_split": sum(1 for p in record.get("near_duplicates", [])
                                          if p["splits"][0] != p["splits"][1]),
                       "leaked_test": len(record.get("leaked_test", [])),
                       "label_issues": len(record.get("label_issues", [])),
                       "outliers": len(record.get("outliers", []))},
            "leakage_aware": leakage_aware_scores(cache_path, set(record.get("leaked_test", []))),
            "near_duplicates": pairs, "label_issues": issues, "outliers": far,
            "map": {"classes": chart.get("classes", []), "points": points, "thumbnails": thumbnails,
                    "embedded": chart.get("embedded", 0), "images": chart.get("images", 0)}}


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _image(uri, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">' if uri else '<div class="muted missing">not on disk</div>'


def _score(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _leakage(rows: list[dict]) -> str:
    if not rows:
        return '<p class="muted">No head with a model to score yet.</p>'
    body = "".join(
        f"<tr><td>{_e(r['name'])}</td><td class='num'>{_score(r['test']['top1'])}</td>"
        f"<td class='num'>{r['n'] + r['removed']}</td><td class='num'>{_score((r['unleaked'] or {}).get('top1'))}</td>"
        f"<td class='num'>{r['n']}</td><td class='num'>{r['removed']}</td></tr>" for r in rows)
    return ('<table id="leakage"><tr><th>head</th><th>test top-1</th><th>test images</th>'
            "<th>top-1 without leaked</th><th>images left</th><th>removed</th></tr>" + body + "</table>")


def _hash_rule(section: dict) -> str:
    """' or pixel hash distance <= 8' for an audit that hashed the pixels (records before the hash: '')."""
    limit = section.get("max_hash_distance")
    return f" or pixel hash distance &le; {limit}" if limit is not None else ""


def _pairs(pairs: list[dict]) -> str:
    cards = "".join(
        f'<div class="pair">{_image(p["thumbnails"][0], p["a"])}{_image(p["thumbnails"][1], p["b"])}'
        f'<div>cos {p["similarity"]:.3f}{_hash_distance(p)} · {_e(p["splits"][0] or "-")} / '
        f'{_e(p["splits"][1] or "-")}</div>'
        f'<div class="muted" title="{_e(p["a"])}">{_e(p["a"])}</div><div class="muted" title="{_e(p["b"])}">'
        f'{_e(p["b"])}</div></div>' for p in pairs)
    return f'<div class="audit-grid">{cards}</div>'


def _hash_distance(pair: dict) -> str:
    """' · hash 2/64' for a pair whose pixels were hashed (older records, or unhashed files: '')."""
    distance = pair.get("hash_distance")
    return f" · hash {distance}/{HASH_BITS}" if distance is not None else ""


def _issues(items: list[dict]) -> str:
    cards = "".join(
        f'<div class="card">{_image(i["thumbnail"], i["path"])}<div title="{_e(i["path"])}">'
        f'{_e(i["path"].rsplit("/", 1)[-1])}</div><div>given: {_e(i["given"])}</div>'
        f'<div class="wrong">suggested: {_e(i["suggested"])}</div><div class="muted">p(given) {i["score"]:.3f}</div>'
        "</div>" for i in items)
    return f'<div class="grid">{cards}</div>'


def _outliers(items: list[dict]) -> str:
    cards = "".join(
        f'<div class="card">{_image(o["thumbnail"], o["path"])}<div title="{_e(o["path"])}">'
        f'{_e(o["path"].rsplit("/", 1)[-1])}</div><div>label: {_e(o["label"])}</div>'
        f'<div class="muted">{o["deviations"]:.1f} MADs below typical; nearest class {_e(o["nearest_class"])}</div>'
        "</div>" for o in items)
    return f'<div class="grid">{cards}</div>'


_STYLE = """
#audit .audit-grid { display: flex; flex-wrap: wrap; gap: 10px; }
#audit .pair { width: 260px; background: #fafbfc; border: 1px solid #e3e6eb; border-radius: 6px; padding: 8px;
               font-size: 12px; overflow: hidden; }
#audit .pair img { width: 120px; height: 120px; object-fit: contain; background: #eef0f4; margin-right: 4px; }
#audit .pair div { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#audit .card img { width: 160px; height: 120px; }
#audit .missing { width: 120px; height: 120px; display: inline-block; }
#audit-map-wrap { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
#audit-map { background: #fff; border: 1px solid #e3e6eb; cursor: crosshair; }
#audit-tip { width: 230px; min-height: 160px; background: #fff; border: 1px solid #e3e6eb; border-radius: 6px;
             padding: 8px; font-size: 12px; word-break: break-all; }
#audit-tip img { width: 96px; height: 96px; object-fit: contain; display: block; background: #eef0f4; }
#audit-controls { margin: 8px 0; }
#audit-controls input[type=search] { width: 260px; padding: 4px 6px; }
.ring-d { color: #7b3fb5; } .ring-l { color: #d9770b; } .ring-o { color: #b4232c; }
"""

#: The map's script: data from the JSON block, drawing, nearest-point hover, click to pin, class search.
_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("audit-data").textContent);
  var canvas = document.getElementById("audit-map"), context = canvas.getContext("2d");
  var tip = document.getElementById("audit-tip"), search = document.getElementById("audit-search");
  var flaggedOnly = document.getElementById("audit-flagged"), status = document.getElementById("audit-status");
  var points = data.points, classes = data.classes, margin = 12, pinned = -1, match = null;
  var rings = {d: "#7b3fb5", l: "#d9770b", o: "#b4232c"};
  var names = {d: "near-duplicate", l: "label issue", o: "outlier"};
  function colour(c) {
    return "hsl(" + ((c * 137.508) % 360).toFixed(1) + "," + (55 + (c % 3) * 15) + "%," + (38 + (c % 4) * 8) + "%)";
  }
  function px(p) {
    return [margin + p[0] * (canvas.width - 2 * margin), margin + (1 - p[1]) * (canvas.height - 2 * margin)];
  }
  function visible(p) { return !(flaggedOnly.checked && !p[5]); }
  function lit(p) { return match === null || match[p[2]]; }
  function draw() {
    context.clearRect(0, 0, canvas.width, canvas.height);
    var order = points.map(function (p, i) { return i; });
    order.sort(function (a, b) { return (lit(points[a]) - lit(points[b])) || (!!points[a][5] - !!points[b][5]); });
    var shown = 0;
    order.forEach(function (i) {
      var p = points[i], xy = px(p);
      if (!visible(p)) return;
      shown += lit(p) ? 1 : 0;
      context.globalAlpha = lit(p) ? 0.9 : 0.12;
      context.fillStyle = lit(p) ? colour(p[2]) : "#8a93a3";
      context.beginPath(); context.arc(xy[0], xy[1], p[5] ? 4.5 : 3, 0, 2 * Math.PI); context.fill();
      if (p[5] && lit(p)) {
        context.globalAlpha = 1; context.lineWidth = 2; context.strokeStyle = rings[p[5][0]];
        context.beginPath(); context.arc(xy[0], xy[1], 7, 0, 2 * Math.PI); context.stroke();
      }
    });
    context.globalAlpha = 1;
    if (pinned >= 0) {
      var xy = px(points[pinned]); context.lineWidth = 2; context.strokeStyle = "#1d2330";
      context.strokeRect(xy[0] - 9, xy[1] - 9, 18, 18);
    }
    status.textContent = shown + " of " + points.length + " points highlighted";
  }
  function nearest(event) {
    var box = canvas.getBoundingClientRect(), sx = canvas.width / box.width, sy = canvas.height / box.height;
    var x = (event.clientX - box.left) * sx, y = (event.clientY - box.top) * sy, best = -1, bestDistance = 100;
    points.forEach(function (p, i) {
      if (!visible(p) || !lit(p)) return;
      var xy = px(p), d = (xy[0] - x) * (xy[0] - x) + (xy[1] - y) * (xy[1] - y);
      if (d < bestDistance) { bestDistance = d; best = i; }
    });
    return best;
  }
  function show(i) {
    tip.textContent = "";
    if (i < 0) { tip.textContent = "Hover over a point (click to pin it)."; return; }
    var p = points[i], uri = data.thumbnails[String(i)];
    var picture = document.createElement(uri ? "img" : "div");
    if (uri) { picture.src = uri; picture.alt = p[3]; picture.id = "audit-tip-image"; }
    else { picture.className = "muted"; picture.textContent = "(no thumbnail)"; }
    tip.appendChild(picture);
    var label = document.createElement("b");
    label.id = "audit-tip-label"; label.textContent = classes[p[2]]; tip.appendChild(label);
    var path = document.createElement("div");
    path.textContent = p[3] + (p[4] ? " [" + p[4] + "]" : ""); tip.appendChild(path);
    p[5].split("").forEach(function (flag) {
      var line = document.createElement("div"); line.className = "ring-" + flag; line.textContent = names[flag];
      tip.appendChild(line);
    });
  }
  canvas.addEventListener("mousemove", function (event) { if (pinned < 0) show(nearest(event)); });
  canvas.addEventListener("click", function (event) { pinned = nearest(event); show(pinned); draw(); });
  search.addEventListener("input", function () {
    var text = search.value.trim().toLowerCase();
    match = text ? classes.map(function (name) { return name.toLowerCase().indexOf(text) >= 0; }) : null;
    draw();
  });
  flaggedOnly.addEventListener("change", draw);
  show(-1); draw();
})();
"""


def render_audit(section: dict) -> str:
    """The section's HTML (a heading, tables, cards and the map with its script)."""
    parts = ['<section id="audit">', "<h2>Audit</h2>"]
    if "note" in section:
        return "\n".join(parts + [f'<p class="muted">{_e(section["note"])}</p>', "</section>"])
    counts = section["counts"]
    parts += [f"<style>{_STYLE}</style>",
              f"<p>{section['images']} images: {counts['near_duplicates']} near-duplicate pairs at cosine &ge; "
              f"{section['threshold']:.2f}{_hash_rule(section)} ({counts['cross_split']} across splits, "
              f"{counts['leaked_test']} test "
              f"images with one in train/valid), {counts['label_issues']} label-issue candidates, "
              f"{counts['outliers']} outliers (docs/audit.md says how each is found).</p>",
              "<h3>Leakage-aware test scores</h3>",
              '<p class="muted">Each head\'s test top-1 on every test image, and without the test images that '
              "have a near-duplicate in train or valid (those are not unseen).</p>", _leakage(section["leakage_aware"])]
    chart = section["map"]
    if chart["points"]:
        data = json.dumps({key: chart[key] for key in ("classes", "points", "thumbnails")}).replace("<", "\\u003c")
        sampled = (f" (a sample of {chart['embedded']} of {chart['images']} images, flagged ones included)"
                   if chart["embedded"] < chart["images"] else "")
        parts += [f"<h3>Map{sampled}</h3>",
                  '<p class="muted">PCA then t-SNE of the pooled features: nearby points look alike to the '
                  'backbone. Colour = class; rings: <span class="ring-d">near-duplicate</span>, '
                  '<span class="ring-l">label issue</span>, <span class="ring-o">outlier</span>. '
                  "Hover for the image, click to pin it.</p>",
                  '<div id="audit-controls"><input type="search" id="audit-search" '
                  'placeholder="highlight classes matching..." list="audit-classes"> '
                  '<label><input type="checkbox" id="audit-flagged"> flagged only</label> '
                  '<span class="muted" id="audit-status"></span></div>',
                  '<datalist id="audit-classes">' + "".join(f'<option value="{_e(name)}">' for name in chart["classes"])
                  + "</datalist>",
                  '<div id="audit-map-wrap"><canvas id="audit-map" width="860" height="600"></canvas>'
                  '<div id="audit-tip"></div></div>',
                  f'<script type="application/json" id="audit-data">{data}</script>',
                  f"<script>{_SCRIPT}</script>"]
    parts += [f"<h3>Near-duplicates ({counts['near_duplicates']}, most similar first)</h3>",
              _pairs(section["near_duplicates"]) if section["near_duplicates"] else '<p class="muted">None.</p>',
              f"<h3>Label-issue candidates ({counts['label_issues']}, most suspicious first)</h3>",
              _issues(section["label_issues"]) if section["label_issues"] else '<p class="muted">None.</p>',
              f"<h3>Outliers ({counts['outliers']})</h3>",
              _outliers(section["outliers"]) if section["outliers"] else '<p class="muted">None.</p>']
    if any(counts[key] > LISTED for key in ("near_duplicates", "label_issues", "outliers")):
        parts.append(f'<p class="muted">The first {LISTED} of each are shown; `audit --json` lists every one.</p>')
    return "\n".join(parts + ["</section>"])
