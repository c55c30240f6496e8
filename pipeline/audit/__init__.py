"""Stage 6, audit: auditing a cache's images from their cached features (no model runs again).

Near-duplicates within and across splits, the test score without leaked images, label-issue
candidates, outliers, a 2-D map, and the nearest cached images to a new photo (docs/audit.md).
"""
