"""Values a page shows beside a row's own fields, set on the row for its template."""

from typing import TypeVar

Row = TypeVar("Row")


def with_values(row: Row, **values: object) -> Row:
    """`row` with `values` as attributes (`{{ hold.badge }}`), for this request only. Set through
    the instance's __dict__: the type checker then knows these names are meant, where a plain
    assignment would name an attribute the model does not declare."""
    vars(row).update(values)
    return row
