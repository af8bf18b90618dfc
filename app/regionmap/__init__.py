"""The region map (Qt-free): every region of a dataset with its pooled embedding, and what is
computed from them: a 2-D projection, cosine nearest neighbours, label suspects, the on-disk
embeddings cache and a bulk-edit plan. ``app/gui/region_map_panel.py`` only draws and forwards.

Modules: ``table`` (RegionTable), ``compute`` (folder -> table, cached), ``cache``, ``parquet_source``
(export -> table), ``projection`` (PCA, UMAP), ``neighbours``, ``suspects``, ``bulk`` (one undo step
for many regions), ``crops`` (thumbnails on demand), ``map_model`` (what the panel binds to).
"""
