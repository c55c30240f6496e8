"""Stage 8, report: what a cache's heads did, as one self-contained HTML page to open and share.

`content` gathers it (leaderboard, per-head metrics, confusions, top losses with thumbnails,
visualisations made for the heads, provenance) as plain JSON-able values; `thumbnails` turns
images into small inline JPEGs; `html` renders the page (inline styles and script, no network).
"""
