"""Files a scientist opens: per-image particle tables, labels, overlays and size-distribution figures, and
the run's summary."""

from rformer_monai.reports.figures import (
    overlay_figure,
    plot_overlay,
    plot_size_distribution,
    save_figure,
    save_prediction_overlay,
    scale_bar_length,
    size_distribution_figure,
)
from rformer_monai.reports.tables import (
    ECD_VALUES_KEY,
    LABELS_SUFFIX,
    OVERLAY_SUFFIX,
    PARTICLE_OUTPUT_SUFFIXES,
    PARTICLES_SUFFIX,
    POOLED_ROW_NAME,
    PSD_SUFFIX,
    SIZE_DISTRIBUTION_NAME,
    SUMMARY_COLUMNS,
    SUMMARY_CSV_NAME,
    analyse_mask,
    write_particle_csv,
    write_run_summary,
)

__all__ = [
    "ECD_VALUES_KEY",
    "LABELS_SUFFIX",
    "OVERLAY_SUFFIX",
    "PARTICLES_SUFFIX",
    "PARTICLE_OUTPUT_SUFFIXES",
    "POOLED_ROW_NAME",
    "PSD_SUFFIX",
    "SIZE_DISTRIBUTION_NAME",
    "SUMMARY_COLUMNS",
    "SUMMARY_CSV_NAME",
    "analyse_mask",
    "overlay_figure",
    "plot_overlay",
    "plot_size_distribution",
    "save_figure",
    "save_prediction_overlay",
    "scale_bar_length",
    "size_distribution_figure",
    "write_particle_csv",
    "write_run_summary",
]
