"""The ground floor: the vocabulary every layer speaks (records, box math, config helpers, the detector protocol
with its letterbox and class names, where the shared data lives). It imports nothing of this project's other
packages; models/ and trackers/ build on it, pipeline/ wires them into the application (the layer contract
in pyproject.toml, checked by tests/test_layers.py)."""
