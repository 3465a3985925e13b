"""How much one message of an executor's stream may carry when several assignments (down)
or results (up) travel together (``StepAssignments``, ``StepResults``; issue 18).

Inline documents are at most 256 KiB each (``common.refs``), so a message stays far below
the 4 MiB a gRPC client receives by default and the 8 MiB the scheduler does. Whatever does
not fit goes in the next message; nothing waits for a batch to fill: a message carries what
was already queued when the stream was free to write.
"""

MESSAGE_ITEMS = 64
MESSAGE_BYTES = 1024 * 1024
