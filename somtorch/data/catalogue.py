"""Catalogues: reading (CSV, FITS tables, ...) and the join back of SOM results (cookbook §8.2).

* :func:`read_catalogue` reads a CSV/TSV, a FITS/VOTable/ECSV table (astropy) or Parquet file
  into a :class:`pandas.DataFrame` and checks that an id column is present and unique.
* :func:`mapping_columns` turns a mapping (best-matching neurons and distances) and the records
  sidecar of the image binary into a table ``id, Best_neuron, Best_neuron_y, Best_neuron_x,
  Neuron_dist, <annotations>``.
* :func:`annotate_catalogue` left-joins those columns onto the original catalogue on the unique
  id (:func:`somtorch.analysis.labels.merge_catalogue`): every catalogue row is kept, rows that
  failed preprocessing (so have no image) keep nulls (NaN).

Convention
----------
``Best_neuron_y`` is the first lattice coordinate (the mapping's row), ``Best_neuron_x`` the
second, as :func:`somtorch.analysis.labels.catalogue_columns` writes them. Annotation values
(e.g. ``P_sidelobe``) are ``null`` (default -1, the cookbook's choice) where the neuron value is
NaN or the row is not applicable (e.g. ``Peak_to_ring >= 3``); rows without an image are NaN.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from somtorch.errors import ConfigError, FileFormatError, ShapeError
from somtorch.io.files import check_regular_file

__all__ = ["read_catalogue", "check_id_column", "mapping_columns", "annotate_catalogue"]

_FITS_EXT = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def read_catalogue(path, id_column: str | None = None, hdu: int | str | None = None) -> pd.DataFrame:
    """Read a catalogue table; with ``id_column`` check that it exists and is unique.

    ``.csv`` (comma) and ``.tsv``/``.tab`` (tab) go through pandas; ``.parquet`` through pandas
    (needs pyarrow); FITS binary tables, ``.ecsv``, ``.vot``/``.xml`` through
    :class:`astropy.table.Table` (multidimensional columns are dropped, byte strings decoded
    and stripped). Raises :class:`MissingFileError`, :class:`FileFormatError` (unreadable) or
    :class:`ConfigError` (bad id column).
    """
    p = os.fspath(path)
    check_regular_file(p, "catalogue")
    low = p.lower()
    try:
        if low.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(p)
        elif low.endswith((".tsv", ".tab")):
            df = pd.read_csv(p, sep="\t")
        elif low.endswith(".parquet"):
            df = pd.read_parquet(p)
        else:
            from astropy.table import Table

            kw = {"hdu": hdu} if (hdu is not None and low.endswith(_FITS_EXT)) else {}
            t = Table.read(p, **kw)
            t = t[[c for c in t.colnames if t[c].ndim <= 1]]
            df = t.to_pandas()
            for c in df.columns:
                if df[c].dtype == object and len(df) and isinstance(df[c].iat[0], bytes):
                    df[c] = df[c].str.decode("utf-8").str.strip()
    except ImportError:
        raise
    except Exception as exc:
        raise FileFormatError(p, "catalogue", None, None,
                              f"cannot read ({type(exc).__name__}: {exc})") from exc
    if id_column is not None:
        check_id_column(df, id_column, p)
    return df


def check_id_column(df: pd.DataFrame, id_column: str, path=None) -> None:
    """Raise :class:`ConfigError` unless ``id_column`` exists, has no nulls and is unique."""
    if id_column not in df.columns:
        raise ConfigError(path, "id_column", id_column, f"one of the columns {list(df.columns)[:20]}")
    col = df[id_column]
    if col.isna().any():
        raise ConfigError(path, f"id column {id_column!r}", "null values",
                          "a unique, non-null id per row", f"first at row {int(np.flatnonzero(col.isna())[0])}")
    dup = col.duplicated()
    if dup.any():
        raise ConfigError(path, f"id column {id_column!r}", col[dup].iloc[0],
                          "unique values", f"{int(dup.sum())} duplicated")


def _neuron_coords(grid: tuple[int, ...], lattice) -> tuple[np.ndarray, str]:
    if lattice is not None:
        return np.asarray(lattice.coords), str(getattr(lattice, "layout", "cartesian"))
    if len(grid) != 2:
        raise ConfigError(None, "lattice", None, "a somtorch.geometry.Lattice",
                          "a hexagonal mapping needs the lattice for neuron coordinates")
    k = np.arange(grid[0] * grid[1])
    return np.stack(np.divmod(k, grid[1]), axis=1), "cartesian"


def mapping_columns(mapping, records, id_column: str, neuron_values: dict | None = None,
                    applicable=None, null: float = -1.0, lattice=None) -> pd.DataFrame:
    """SOM columns per image: ``id_column``, ``Best_neuron``, ``Best_neuron_y/x``,
    ``Neuron_dist`` and one column per ``neuron_values`` entry.

    Parameters
    ----------
    mapping : :class:`somtorch.io.Mapping` or a mapping file path.
    records : the image binary's records (list of dicts holding ``id_column``, one per image,
        as :func:`somtorch.data.run_preprocessing` writes), or a list of ids.
    neuron_values : name -> per-neuron values, flat ``(N,)`` (PINK neuron order) or shaped
        like ``mapping.data.shape[1:]`` (e.g. a ``(10, 10)`` P_sidelobe table indexed [y, x]).
    applicable : boolean per image; ``False`` rows get ``null`` in the annotation columns.
    lattice : :class:`somtorch.geometry.Lattice` (needed for hexagonal mappings).
    """
    from somtorch.analysis.labels import catalogue_columns
    from somtorch.io import Mapping

    m = mapping if isinstance(mapping, Mapping) else Mapping(mapping)
    ids = [r[id_column] if isinstance(r, dict) else r for r in records]
    if len(ids) != len(m):
        raise ShapeError(f"{len(ids)} records for {len(m)} mapped images")
    grid = tuple(m.data.shape[1:])
    coords, layout = _neuron_coords(grid, lattice)
    rc = m.bmu(squeeze=False).reshape(len(m), -1)
    flat = rc[:, 0] * grid[1] + rc[:, 1] if len(grid) == 2 else rc[:, 0]
    vals = {}
    for name, v in (neuron_values or {}).items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size != coords.shape[0]:
            raise ShapeError(f"neuron_values[{name!r}] has {a.size} values for {coords.shape[0]} neurons")
        vals[name] = a
    cols = catalogue_columns(flat, m.bmu_ed(), coords, layout=layout, neuron_values=vals,
                             applicable=applicable, null=null)
    cols.insert(0, id_column, pd.Series(ids, dtype=object))
    return cols


def annotate_catalogue(catalogue: pd.DataFrame, new_columns: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Left-join ``new_columns`` onto ``catalogue`` on the unique ``id_column`` (cookbook §8.2).

    Every catalogue row is kept in its order; rows without a match (failed preprocessing) hold
    NaN in the new columns. The id column of ``new_columns`` is cast to the catalogue's dtype
    (ids read back from JSON records may be ints or strings). Raises :class:`ShapeError` for a
    non-unique id, an id unknown to the catalogue, or a column that already exists.
    """
    from somtorch.analysis.labels import merge_catalogue

    new = new_columns.copy()
    if id_column in new.columns and id_column in catalogue.columns:
        try:
            new[id_column] = new[id_column].astype(catalogue[id_column].dtype)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"id column {id_column!r}: values {new[id_column].iloc[:3].tolist()} "
                             f"do not match the catalogue's dtype {catalogue[id_column].dtype}") from exc
        unknown = ~new[id_column].isin(catalogue[id_column])
        if unknown.any():
            raise ShapeError(f"{int(unknown.sum())} ids not in the catalogue "
                             f"(e.g. {new[id_column][unknown].iloc[0]!r})")
    out = merge_catalogue(catalogue, new, id_column)
    return out
