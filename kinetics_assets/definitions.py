"""The `kinetics_assets` code location: every module of `kinetics_assets/defs`, loaded the way `dg`
projects load theirs. Importing this module reads no setting and imports no engine (torch, Ray,
Lance): Dagster builds the definitions when it loads the code location, from the environment then.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
