"""The CLI's context: :class:`control.context.Context`, shared with the dashboard."""

from __future__ import annotations

from control.context import STACK_FILE as STACK_FILE
from control.context import STATE_DIR as STATE_DIR
from control.context import Context
from control.context import check_urls as check_urls
from control.context import embedded_stack_urls as embedded_stack_urls

CliContext = Context
