"""Cell: the building block of networks (MindSpore's nn.Cell) with parameter traversal, train/eval state,
dynamic input signatures, and errors that name the layer they come from."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..errors import MsgxError, ShapeError
from ..tensor import Parameter, Tensor

_LOCAL = threading.local()
_RNG = [np.random.default_rng(0)]


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises new layers' weights."""
    _RNG[0] = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    return _RNG[0]


_train_mode_changes = 0  # set_train calls so far: jit functions trace cells' modes into their graphs


def train_mode_changes() -> int:
    return _train_mode_changes


class Cell:
    """Subclass it, create layers/Parameters in __init__ and write `construct(*inputs)`."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_cells", OrderedDict())
        object.__setattr__(self, "training", False)
        object.__setattr__(self, "_input_signature", None)
        object.__setattr__(self, "_scope", "")

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise MsgxError(
                f"{type(self).__name__}.__init__ must call super().__init__() before setting {name!r}"
            )
        self._params.pop(name, None)
        self._cells.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
            value.name = f"{self._scope}{name}" if self._scope else name
        elif isinstance(value, Cell):
            self._cells[name] = value
            value._set_scope(f"{self._scope}{name}.")
        object.__setattr__(self, name, value)

    def _set_scope(self, prefix: str) -> None:
        object.__setattr__(self, "_scope", prefix)
        for n, p in self._params.items():
            p.name = prefix + n
        for n, c in self._cells.items():
            c._set_scope(f"{prefix}{n}.")

    # ------------------------------------------------------------------ running
    def construct(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define construct()")

    def __call__(self, *inputs, **kwargs):
        try:
            return self.construct(*inputs, **kwargs)
        except ShapeError as e:
            if getattr(e, "_cell_named", False):
                raise
            where = self._scope[:-1] or type(self).__name__
            err = ShapeError(f"in cell {where!r} ({type(self).__name__}): {e}")
            err._cell_named = True
            raise err from e

    def set_inputs(self, *inputs: Tensor) -> None:
        """Declare input shapes for graph mode; None dims are dynamic (compiled once for all sizes)."""
        object.__setattr__(self, "_input_signature", tuple(inputs))

    def set_train(self, mode: bool = True) -> "Cell":
        global _train_mode_changes
        _train_mode_changes += 1
        for _, c in self.cells_and_names():
            object.__setattr__(c, "training", mode)
        return self

    # ------------------------------------------------------------------ traversal
    def cells_and_names(self, prefix: str = ""):
        yield prefix, self
        for n, c in self._cells.items():
            yield from c.cells_and_names(f"{prefix}.{n}" if prefix else n)

    def parameters_and_names(self):
        seen = set()
        for _, c in self.cells_and_names():
            for p in c._params.values():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p.name, p

    def get_parameters(self):
        return (p for _, p in self.parameters_and_names())

    def trainable_params(self) -> list[Parameter]:
        return [p for p in self.get_parameters() if p.requires_grad]

    def untrainable_params(self) -> list[Parameter]:
        return [p for p in self.get_parameters() if not p.requires_grad]

    def parameters_dict(self) -> dict:
        return dict(self.parameters_and_names())

    def insert_child_to_cell(self, name: str, cell: "Cell") -> None:
        setattr(self, name, cell)

    def __repr__(self):
        kids = "".join(f"\n  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self._cells.items())
        return f"{type(self).__name__}({self.extend_repr()}{kids}{chr(10) if kids else ''})"

    def extend_repr(self) -> str:
        return ""


class SequentialCell(Cell):
    """Cells applied in order."""

    def __init__(self, *cells):
        super().__init__()
        if len(cells) == 1 and isinstance(cells[0], (list, tuple)):
            cells = cells[0]
        for i, c in enumerate(cells):
            setattr(self, str(i), c)

    def __getitem__(self, i):
        return list(self._cells.values())[i]

    def __len__(self):
        return len(self._cells)

    def __iter__(self):
        return iter(list(self._cells.values()))

    def append(self, cell: Cell) -> None:
        setattr(self, str(len(self._cells)), cell)

    def construct(self, x):
        for c in self._cells.values():
            x = c(x)
        return x


class CellList(Cell):
    """A list of cells whose parameters are registered."""

    def __init__(self, cells=()):
        super().__init__()
        for c in cells:
            self.append(c)

    def append(self, cell: Cell) -> None:
        setattr(self, str(len(self._cells)), cell)

    def __getitem__(self, i):
        return list(self._cells.values())[i]

    def __len__(self):
        return len(self._cells)

    def __iter__(self):
        return iter(list(self._cells.values()))
