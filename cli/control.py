"""Run control for the CLI's commands: the operator actions of :mod:`control.actions`."""

from __future__ import annotations

from control.actions import DEFAULT_MAX_TICKS as DEFAULT_MAX_TICKS
from control.actions import BackfillResult as BackfillResult
from control.actions import CancelReport as CancelReport
from control.actions import TooManyTicks as TooManyTicks
from control.actions import backfill as backfill
from control.actions import cancel as cancel
from control.actions import operator as operator
from control.actions import rerun_source as rerun_source
from control.actions import ticks_between as ticks_between
