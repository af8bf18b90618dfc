"""`roiscope export --engine ray`: the export on Ray Data (optional extra ``roiscope[ray]``).
Importing this package does not import Ray; running the export does."""
from app.export_ray.engine import INSTALL_HINT, RayExportSummary, RayOptions, export_ray

__all__ = ["INSTALL_HINT", "RayExportSummary", "RayOptions", "export_ray"]
