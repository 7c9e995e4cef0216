"""Property tests: arbitrary bytes and mutated valid files give a result or a CliperError, never another exception.

Readers: the ``.inter`` reader, the raw-log reader (CSV and JSON Lines), the three catalogue
readers (Amazon 2014, Amazon 2023, generic JSONL/CSV) and the id-map reader, each on plain,
gzip and cut-short gzip files. ``CLIPER_FUZZ_EXAMPLES`` sets the examples per reader (default 200, drawn from both
strategies; ``CLIPER_FUZZ_EXAMPLES=3000`` for a deep run, see docs/reliability.md).
The memory bound is checked in a child process (``test_fuzz_memory.py``).
"""

from __future__ import annotations

import pytest
from fuzz_targets import EXAMPLES, TARGETS, inputs
from hypothesis import HealthCheck, given, settings

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.mark.parametrize("reader", sorted(TARGETS))
def test_reader_gives_result_or_cliper_error(reader):
    fn, seed = TARGETS[reader]

    @FUZZ
    @given(inputs(seed))
    def check(case):
        data, mode = case
        fn(data, mode)  # raises anything but CliperError -> the test fails with the shrunk input

    check()


def test_seeds_are_valid_so_mutations_start_from_real_files():
    """Each seed parses cleanly: the mutated strategy explores near valid input, not only noise."""
    from cliper.errors import CliperError

    for name, (fn, seed) in TARGETS.items():
        result = fn(seed, "plain")
        assert not isinstance(result, CliperError), (name, result)
