"""Command lines of the tools whose arguments are not parsed in their API's module.

Each module's ``main(argv=None, prog=None)`` is what ``tools/<name>.py`` runs, what ``python -m
ipr_plugin.cli.<name>`` runs, and (in a wheel, which has no tools/) the console script ``ipr-<name>`` setup.py
installs. The benchmark, the accuracy study, the background-share table and the GPU measurements keep their
``main`` beside their code: :mod:`ipr_plugin.benchmark`, :mod:`ipr_plugin.apis.accuracy_study`,
:mod:`ipr_plugin.apis.background_share`, :mod:`ipr_plugin.apis.gpu_measurements`.
"""
