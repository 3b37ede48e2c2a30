"""btnet: Branch-to-Trunk Networks for multi-resolution face recognition.

Layers, from the bottom up: ``models`` (pure nn.Modules), ``losses``, ``data`` (formats and the
resolution pipeline), ``io`` (safe storage), ``inference`` (encoders for images of any size),
``training``, ``evaluation``, ``deployment``, ``pipeline`` (demo and paper studies) and ``cli``.
"""

__version__ = "0.1.0"
