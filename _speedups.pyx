# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled versions of the two per-level loops of a replay (an optional accelerator).

One job: do, in C, exactly what two pure-Python loops do per price level, so a replay's cost
per level stops being the interpreter's. The pure-Python loops stay in place and are the
reference: ``feeds.common.levels`` (a level list of the feed -> ``[(ticks, size), ...]``)
and ``order_book._apply_levels`` (one side of a delta applied to its
``SortedDict``). ``tests/test_speedups.py`` checks that both paths give the same messages,
books and errors.

Public names:

- ``SOURCE_SHA256``: SHA-256 of the ``.pyx`` it was built from (``setup.py`` passes it);
  ``order_book`` uses the build only when it matches the checkout's ``_speedups.pyx``.
- ``levels(raw, inv, cache, new_price, numbers=True)``: the converted level list, or ``None``
  where the Python loop must decide (any shape other than a list of two-element lists, any
  size that is not a short plain decimal string or an allowed finite JSON number >= 0, any
  price not in ``cache`` that ``new_price`` refuses). It never raises for bad data: the
  caller re-runs the Python loop, which applies the number grammar and words the problem.
- ``Side(sorted_dict)`` and ``apply_delta(bid_side, ask_side, bids, asks)``: apply both
  sides of a delta (``OrderBook`` binds the two sides); ``False`` (nothing changed) unless
  both level lists are lists of two-tuples.

The build is optional (``setup.py`` turns a failed compile or link into a warning): without a
C compiler ``pip install -e .`` goes on, and both modules run their Python loops.
``RLMM_PURE_PYTHON=1`` ignores a build.
"""

from cpython.dict cimport (
    PyDict_Contains, PyDict_DelItem, PyDict_GetItem, PyDict_SetItem, PyDict_Size,
)
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_Insert
from cpython.number cimport PyNumber_Float
from cpython.object cimport Py_LT, PyObject, PyObject_IsTrue, PyObject_RichCompareBool
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport INFINITY

cdef extern from *:
    """
    #ifndef RLMM_SOURCE_SHA256
    #define RLMM_SOURCE_SHA256 ""
    #endif
    """
    const char* RLMM_SOURCE_SHA256

SOURCE_SHA256 = RLMM_SOURCE_SHA256.decode("ascii")


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL

cdef double _POW10_F[16]
cdef long long _POW10_I[16]
cdef int _i
_POW10_I[0] = 1
for _i in range(16):
    if _i:
        _POW10_I[_i] = _POW10_I[_i - 1] * 10
    _POW10_F[_i] = <double>_POW10_I[_i]

cdef long long _MAX_TICKS = 1000000000
"""Largest tick count the decimal path produces: below it ``float(price) * inv`` is within
2.3e-7 of the integer (two roundings of 2**-53), inside ``_GRID_TOL`` = 1e-6, so the Python
loop would accept the price and round it to the same integer."""


cdef inline bint _decimal(object text, long long* mantissa, int* decimals):
    """Parse ``text`` of the shape ``digits[.digits]`` (1-15 digits, no sign, no exponent).

    Such a number is ``mantissa / 10**decimals`` with both exactly representable as doubles,
    so one IEEE division gives the correctly rounded double, which is what ``float(text)``
    (David Gay's correctly rounded ``strtod``) returns (Clinger's fast path). False for any
    other text: the caller then calls ``float`` itself.
    """
    if type(text) is not str or not PyUnicode_IS_ASCII(text):  # other digits etc.: float()
        return False
    cdef Py_ssize_t n, i
    cdef const char* c = PyUnicode_AsUTF8AndSize(text, &n)
    cdef long long v = 0
    cdef int digits = 0, frac = -1
    cdef char ch
    for i in range(n):
        ch = c[i]
        if 48 <= ch <= 57:  # '0'-'9'
            digits += 1
            if digits > 15:
                return False
            v = v * 10 + (ch - 48)
            if frac >= 0:
                frac += 1
        elif ch == 46 and frac < 0:  # '.'
            frac = 0
        else:
            return False
    if digits == 0:
        return False
    mantissa[0] = v
    decimals[0] = frac if frac > 0 else 0
    return True


cdef inline long long _decimal_ticks(object text, int tick_decimals):
    """Ticks of a price text when the tick is ``10**-tick_decimals``; 0 when undecided.

    Exact integer arithmetic on the digits: ``mantissa * 10**(tick_decimals - decimals)``, or
    ``mantissa / 10**(decimals - tick_decimals)`` when that divides exactly. Anything else
    (off the grid, zero, too large, another shape) is left to the cache and ``new_price``.
    """
    cdef long long m, scale
    cdef int k
    if not _decimal(text, &m, &k) or m <= 0:
        return 0
    if k <= tick_decimals:
        scale = _POW10_I[tick_decimals - k]
        if m >= _MAX_TICKS // scale:
            return 0
        return m * scale
    scale = _POW10_I[k - tick_decimals]
    if m % scale:
        return 0
    m = m // scale
    return m if m < _MAX_TICKS else 0


def levels(object raw, double inv, dict cache, object new_price, bint numbers=True):
    """``[[price, size], ...]`` -> ``[(ticks, size), ...]`` as ``feeds.common.levels``; ``None``: defer.

    Per level: the size is parsed by ``_decimal`` where it has the plain decimal shape (at
    most 15 digits: no underflow possible); a JSON number (``int``/``float``, never a bool)
    where ``numbers`` allows them goes through ``PyNumber_Float`` (the C call behind
    ``float``) and must be finite and ``>= 0``; anything else (a longer or malformed string, a
    bool, a list, ...) defers to the Python loop, which applies the grammar and words it. The
    price: with a power-of-ten tick (``inv`` = 1, 10, ..., 1e15) exact digit arithmetic
    (``_decimal_ticks``); otherwise, or where that declines, ``cache[price]`` or on a miss
    ``new_price(price, inv, cache, numbers)`` (the Python function itself, so validation and
    the cache bound are shared); a price that is neither a string nor an allowed number defers
    before the cache is read (``True == 1`` would find a cached int price).
    """
    if type(raw) is not list:
        return None
    cdef list src = <list>raw
    cdef Py_ssize_t i, n = PyList_GET_SIZE(src)
    cdef list out = []
    cdef object level, price, text, size, ticks, tp
    cdef double q
    cdef long long m, t
    cdef int k, tick_decimals = -1
    cdef PyObject* hit
    for k in range(16):
        if inv == _POW10_F[k]:
            tick_decimals = k
            break
    for i in range(n):
        level = <object>PyList_GET_ITEM(src, i)
        if type(level) is not list or PyList_GET_SIZE(level) != 2:
            return None
        text = <object>PyList_GET_ITEM(level, 1)
        if _decimal(text, &m, &k):
            q = <double>m / _POW10_F[k]
            size = q
        else:
            tp = type(text)
            if not numbers or (tp is not float and tp is not int):
                return None
            try:
                size = PyNumber_Float(text)
            except (TypeError, ValueError, OverflowError):
                return None
            q = PyFloat_AS_DOUBLE(size)
            if not (0.0 <= q < INFINITY):
                return None
        price = <object>PyList_GET_ITEM(level, 0)
        t = _decimal_ticks(price, tick_decimals) if tick_decimals >= 0 else 0
        if t:
            ticks = t
        else:
            tp = type(price)
            if tp is not str and (not numbers or (tp is not float and tp is not int)):
                return None
            hit = PyDict_GetItem(cache, price)  # NULL when absent or unhashable (error cleared)
            if hit is NULL:
                try:
                    ticks = new_price(price, inv, cache, numbers)
                except Exception:  # any refusal: the Python loop re-runs this list and words it
                    return None
            else:
                ticks = <object>hit
        out.append((ticks, size))
    return out


cdef inline Py_ssize_t _bisect_left(list a, object x) except -1:
    cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(a), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if PyObject_RichCompareBool(<object>PyList_GET_ITEM(a, mid), x, Py_LT):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t _bisect_right(list a, object x) except -1:
    cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(a), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if PyObject_RichCompareBool(x, <object>PyList_GET_ITEM(a, mid), Py_LT):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef class Side:
    """One ``SortedDict`` side with its key list's internal lists bound once.

    sortedcontainers 2.4 assigns ``_lists``, ``_maxes`` and ``_index`` only in ``__init__``
    (they are then changed in place), so the objects read here stay those of the list.
    ``_len`` is kept in step by ``apply_delta`` (one store per side and call).
    """

    cdef object book
    cdef object keys
    cdef list lists
    cdef list maxes
    cdef list index

    def __init__(self, book):
        self.book = book
        self.keys = book._list
        self.lists = self.keys._lists
        self.maxes = self.keys._maxes
        self.index = self.keys._index


cdef Py_ssize_t _add(Side side, object price, Py_ssize_t load2) except -1:
    """``SortedList.add`` (sortedcontainers 2.4 sortedlist.py L253-287), as order_book inlines it.

    Returns 0 when done, or ``pos + 1`` when sortedcontainers' ``_expand(pos)`` must split the
    sublist or keep the index (the caller stores the pending ``_len`` first).
    """
    cdef list lists = side.lists
    cdef list maxes = side.maxes
    cdef list sub
    cdef Py_ssize_t pos
    if PyList_GET_SIZE(maxes):
        pos = _bisect_right(maxes, price)
        if pos == PyList_GET_SIZE(maxes):
            pos -= 1
            sub = <list>PyList_GET_ITEM(lists, pos)
            sub.append(price)
            maxes[pos] = price
        else:
            sub = <list>PyList_GET_ITEM(lists, pos)
            PyList_Insert(sub, _bisect_right(sub, price), price)
        if PyList_GET_SIZE(side.index) or PyList_GET_SIZE(sub) > load2:
            return pos + 1
    else:
        lists.append([price])
        maxes.append(price)
    return 0


cdef int _remove(Side side, object price, Py_ssize_t load_half, Py_ssize_t* at) except -1:
    """``SortedList.remove`` + ``_delete`` (L426-500) for a key known present, as inlined in order_book.

    Returns 1 when done here, or 0 with ``at[0], at[1] = pos, idx`` for the caller to pass to
    sortedcontainers' ``_delete`` (merging small sublists / keeping the index).
    """
    cdef list lists = side.lists
    cdef list maxes = side.maxes
    cdef Py_ssize_t pos = _bisect_left(maxes, price)
    cdef list sub = <list>PyList_GET_ITEM(lists, pos)
    cdef Py_ssize_t idx = _bisect_left(sub, price)
    cdef Py_ssize_t n = PyList_GET_SIZE(sub)
    if (n > 1 and not PyList_GET_SIZE(side.index)
            and (PyList_GET_SIZE(lists) == 1 or n > load_half + 1)):
        del sub[idx]
        maxes[pos] = <object>PyList_GET_ITEM(sub, n - 2)
        return 1
    at[0] = pos
    at[1] = idx
    return 0


cdef bint _pairs(object levels):
    """True for a list whose items are all two-tuples (the loader's level lists)."""
    if type(levels) is not list:
        return False
    cdef list lst = <list>levels
    cdef Py_ssize_t i
    cdef object level
    for i in range(PyList_GET_SIZE(lst)):
        level = <object>PyList_GET_ITEM(lst, i)
        if type(level) is not tuple or PyTuple_GET_SIZE(level) != 2:
            return False
    return True


cdef int _apply(list lst, Side side) except -1:
    """One side, as ``order_book._apply_levels``: size 0 removes, else set (new keys sorted in)."""
    cdef Py_ssize_t i, r, n, pending = 0
    cdef Py_ssize_t at[2]
    cdef object level, price, size
    cdef object book = side.book
    cdef object keys = side.keys
    cdef Py_ssize_t load = keys._load
    for i in range(PyList_GET_SIZE(lst)):
        level = <object>PyList_GET_ITEM(lst, i)
        price = <object>PyTuple_GET_ITEM(level, 0)
        size = <object>PyTuple_GET_ITEM(level, 1)
        if PyObject_IsTrue(size):
            # one lookup: the store, then the size of the dict says whether the price is new
            # (the common case is a resting level changing size)
            n = PyDict_Size(book)
            PyDict_SetItem(book, price, size)
            if PyDict_Size(book) == n:
                continue
            r = _add(side, price, load << 1)
            pending += 1
            if r:  # split the sublist / keep the index: sortedcontainers' own _expand
                keys._len += pending
                pending = 0
                keys._expand(r - 1)
        elif PyDict_Contains(book, price):
            PyDict_DelItem(book, price)
            if _remove(side, price, load >> 1, at):
                pending -= 1
            else:  # merge small sublists / keep the index: _delete (it decrements _len)
                keys._len += pending
                pending = 0
                keys._delete(at[0], at[1])
    if pending:
        keys._len += pending
    return 0


def apply_delta(Side bid_side, Side ask_side, object bids, object asks):
    """Apply a delta's two level lists to the two sides (dict stores, sorted keys).

    Returns ``False`` with nothing changed unless both are lists of two-tuples; the caller
    then takes the Python loop (which accepts any iterable of pairs).
    """
    if not (_pairs(bids) and _pairs(asks)):
        return False
    _apply(<list>bids, bid_side)
    _apply(<list>asks, ask_side)
    return True
