"""``portkit debug``: where an artifact first goes wrong, across frameworks.

Runtimes expose every intermediate tensor of one run (``Session.trace`` -> ``results.Trace``,
values in ``.npy`` files); ``match`` pairs the source's tensors with the artifact's (names the
converters kept, model outputs, then shape, layout and value); ``divergence`` walks the source
in topological order and finds the first pair outside the policy whose inputs agree;
``overlay`` writes per-node errors as Model Explorer node data; ``run`` composes them.
Nothing here imports a framework: the traces run in workers.
"""
