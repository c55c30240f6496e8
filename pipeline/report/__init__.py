"""Stage 6, report: what a cache's heads did, as a text leaderboard or one self-contained HTML page.

`leaderboard` ranks every head of a cache on validation (the text `report`); `rungs` says which
rung of the transfer-learning ladder to try next. For the page, `content` gathers it (leaderboard,
per-head metrics, confusions, top losses with thumbnails, visualisations made for the heads,
provenance) as plain JSON-able values; `thumbnails` turns images into small inline JPEGs; `html`
renders the page (inline styles and script, no network).
"""
