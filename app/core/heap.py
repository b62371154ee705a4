"""The garbage collector's settings for a long-running process: the API server and the
worker call `settle` once start-up is done."""

import gc

# A young collection after this many new container objects, rather than Python's 700. A
# request, or a batch of an export, makes thousands of dicts and lists that die together
# by reference counting; at 700 the collector walked each of them several times first
# (measured: a fifth of the CPU time of a FHIR `$export`). Cycles are still collected.
YOUNG_OBJECTS = 50_000


def settle() -> None:
    """What start-up made (modules, models, the OpenAPI schema) lives as long as the
    process: out of the collector's sight, full collections stay short; and young
    collections come less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, old)
