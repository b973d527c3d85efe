"""Export: NIR graphs (export_nir / import_nir). See docs/export.md."""

from .nir_export import convert_reset, export_nir, import_nir, to_nir_graph

__all__ = ["convert_reset", "export_nir", "import_nir", "to_nir_graph"]
