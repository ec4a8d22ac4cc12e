"""How many examples a property test draws: its own number, capped under `mutation`."""

from __future__ import annotations

from hypothesis import settings

MUTATION_PROFILE = "mutation"


def examples(wanted: int) -> int:
    """``wanted``, or at most the mutation profile's ``max_examples`` while it is loaded.

    Mutation testing reruns the property tests once per mutant: there they draw a few
    derandomized examples (stable verdicts, bearable time); everywhere else, all of them.
    """
    if settings.get_current_profile_name() == MUTATION_PROFILE:
        return min(wanted, settings.get_profile(MUTATION_PROFILE).max_examples)
    return wanted
