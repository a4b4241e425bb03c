"""Adapters: real public logs, shipped as files in published PyPI packages, written as contract logs.

Each adapter reads one pinned package file (checked by sha256), maps its columns onto the data
contract (docs/data-contract.md) and writes ``impressions.parquet`` with a ``README.md`` that states
the mapping, what in it is synthetic, the licence, the file's hash and the counted rows. The CLI's
``unitarget datasets`` commands are thin wrappers over ``convert_open_bandit`` / ``convert_hillstrom``.
"""

from unitarget.datasets.fetch import PinnedFile, check_sha256, download, package_file
from unitarget.datasets.hillstrom import HILLSTROM, convert_hillstrom
from unitarget.datasets.open_bandit import OPEN_BANDIT, convert_open_bandit
from unitarget.datasets.summary import Summary

__all__ = ["HILLSTROM", "OPEN_BANDIT", "PinnedFile", "Summary", "check_sha256", "convert_hillstrom",
           "convert_open_bandit", "download", "package_file"]
