"""Conversion edges (one module per edge), the registry that plans routes over them, and
``pipeline``, which runs routes and keeps the artifact that ran and matched.

``portkit.convert(source, to=...)`` is also callable (see ``portkit/__init__.py``), so the
Python call reads like the ``portkit convert`` command.
"""
