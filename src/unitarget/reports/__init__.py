"""Reports: the paper's Table 1 in Markdown and per-tier AP charts."""

from unitarget.reports.charts import save_png, tier_ap_chart, tier_relative_gain_chart
from unitarget.reports.format import MINUS, format_relative, relative_change
from unitarget.reports.table1 import table1_markdown

__all__ = [
    "MINUS",
    "format_relative",
    "relative_change",
    "save_png",
    "table1_markdown",
    "tier_ap_chart",
    "tier_relative_gain_chart",
]
