"""Trigger that waits for an Apply Changes in the triggerer, holding no worker slot.

It only reads (GET): a triggerer restart re-creates it from its kwargs and it resumes polling; it can
never start a second installation. It yields one event; the deferring task's ``execute_complete``
checks it with :func:`checked_event`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from airflow.triggers.base import BaseTrigger, TriggerEvent

from opsman.compat import AirflowFailException
from opsman.exceptions import OpsManagerError, OpsManagerNotFoundError
from opsman.hooks import OpsManagerAsyncHook
from opsman.models import new_log_text

#: Stream breaks (ended without exit, connection lost) after which the trigger polls the log instead.
MAX_STREAM_BREAKS = 3
#: The statuses of the trigger's one event.
EVENT_STATUSES: Final = frozenset({"succeeded", "failed", "error", "timeout"})


def checked_event(event: Any) -> dict[str, Any]:
    """The trigger's event, once its shape is checked; an ``error`` event is raised as the task's error,
    one no retry can fix (``permanent``) failing the task at once."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise OpsManagerError(f"the installation trigger sent an unexpected event: {event!r}")
    if event["status"] == "error":
        error = AirflowFailException if event.get("permanent") else OpsManagerError
        raise error(f"waiting for installation {event.get('installation_id')} failed: {event.get('message')}")
    return event


class InstallationTrigger(BaseTrigger):
    """Poll one installation until it is terminal, printing new log lines as they arrive.

    Log lines come from Ops Manager's streaming endpoint (``current_log``, Server-Sent Events) while
    the installation runs, so each line crosses the network once. Where that endpoint is missing or
    breaks, the cumulative log is fetched at most every ``log_interval_seconds`` and once more at the
    end, printing only what is new, instead of the whole log on every status poll as om does.

    :param opsman_conn_id: Airflow connection of type ``opsman``.
    :param installation_id: the installation to wait for; ``None`` to wait first for a person to
        start one newer than ``after_installation_id`` (manual Apply Changes).
    :param after_installation_id: with no ``installation_id``, the newest installation id to ignore.
    :param poll_interval_seconds: seconds between status polls.
    :param log_interval_seconds: seconds between log downloads while running.
    :param log_offset: characters of the log already printed (so a resumed wait does not repeat them).
    :param end_time: epoch seconds after which the trigger gives up with a ``timeout`` event.
    :param stream_logs: use the streaming log endpoint when Ops Manager has it.
    :param follow_log: print the installation's log; ``False`` only waits for its end (someone else's
        installation, which a step waits out before starting its own).
    """

    def __init__(
        self,
        opsman_conn_id: str,
        installation_id: int | None,
        poll_interval_seconds: float = 30.0,
        log_interval_seconds: float = 60.0,
        log_offset: int = 0,
        end_time: float | None = None,
        after_installation_id: int | None = None,
        stream_logs: bool = True,
        follow_log: bool = True,
    ) -> None:
        super().__init__()
        self.opsman_conn_id = opsman_conn_id
        self.installation_id = None if installation_id is None else int(installation_id)
        self.after_installation_id = after_installation_id
        self.follow_log = follow_log
        self.stream_logs = stream_logs and follow_log
        self._streamed_to_end = False
        self._stream_breaks = 0
        self.poll_interval_seconds = float(poll_interval_seconds)
        self.log_interval_seconds = float(log_interval_seconds)
        self.log_offset = int(log_offset)
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "opsman_conn_id": self.opsman_conn_id,
                "installation_id": self.installation_id,
                "poll_interval_seconds": self.poll_interval_seconds,
                "log_interval_seconds": self.log_interval_seconds,
                "log_offset": self.log_offset,
                "end_time": self.end_time,
                "after_installation_id": self.after_installation_id,
                "stream_logs": self.stream_logs,
                "follow_log": self.follow_log,
            },
        )

    def _event(self, status: str, message: str, permanent: bool = False) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "installation_id": self.installation_id,
                "log_offset": self.log_offset,
                "message": message,
                # An error no retry can fix (rejected credentials, missing permission): the task fails at once.
                "permanent": permanent,
            }
        )

    async def _print_new_log(self, hook: OpsManagerAsyncHook, final: bool = False) -> None:
        logs = await hook.get_installation_logs(self.installation_id)
        text, self.log_offset = new_log_text(logs, self.log_offset, final)
        for line in text.splitlines():
            self.log.info("[installation %d] %s", self.installation_id, line)

    async def _stream_log(self, hook: OpsManagerAsyncHook) -> None:
        """Print the running installation's log from the stream, each line once.

        The stream replays the whole log before going live (docs/ops-manager-api.md, section 8), on every
        connection. ``log_offset`` counts the characters of the log already printed (by the sensor,
        an earlier stream or a poll), so replayed lines are counted, not printed. A stream that ends
        without its ``exit`` event is reopened; after ``MAX_STREAM_BREAKS`` breaks, or where the
        endpoint is missing, the log is polled instead.
        """
        position, installing = 0, False
        try:
            async for event, data in hook.stream_current_log():
                if event == "step_info":
                    installing = True
                elif event == "exit":
                    # An exit without step_info means nothing was running when the stream opened:
                    # our installation ended meanwhile, and the final poll prints what is left.
                    self._streamed_to_end = installing
                    if not installing:
                        self.stream_logs = False
                    return
                elif event == "":
                    for line in data.split("\n"):
                        position += len(line) + 1
                        if position > self.log_offset:
                            self.log.info("[installation %d] %s", self.installation_id, line)
                            self.log_offset = position
            trouble = "the stream ended before its exit event"
        except OpsManagerNotFoundError:
            self.log.info(
                "This Ops Manager has no streaming log endpoint; polling the installation log instead"
            )
            self.stream_logs = False
            return
        except (OpsManagerError, ValueError) as err:  # ValueError: aiohttp's "line too long"
            trouble = str(err)
        self._stream_breaks += 1
        if self._stream_breaks > MAX_STREAM_BREAKS:
            self.log.warning(
                "Streaming the installation log failed %d times (%s); polling it instead",
                self._stream_breaks,
                trouble,
            )
            self.stream_logs = False
        else:
            self.log.info(
                "Streaming the installation log broke (%s); reopening it (it replays, printed lines are skipped)",
                trouble,
            )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OpsManagerAsyncHook(opsman_conn_id=self.opsman_conn_id)
        last_log_fetch = 0.0
        try:
            while self.installation_id is None:
                installations = await hook.list_installations()
                if installations and installations[0].id > (self.after_installation_id or 0):
                    self.installation_id = installations[0].id
                    self.log.info(
                        "Installation %d was started; waiting for it to finish", self.installation_id
                    )
                    break
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event("timeout", "nobody started an Apply Changes before the deadline")
                    return
                await asyncio.sleep(self.poll_interval_seconds)
            while True:
                status = await hook.get_installation_status(self.installation_id)
                past_deadline = self.end_time is not None and time.time() >= self.end_time
                if (
                    self.stream_logs
                    and not status.is_terminal
                    and not self._streamed_to_end
                    and not past_deadline
                ):
                    left = None if self.end_time is None else self.end_time - time.time()
                    try:
                        await asyncio.wait_for(self._stream_log(hook), timeout=left)
                    except TimeoutError:
                        pass  # the deadline check below ends the wait
                    continue
                now = time.monotonic()
                due = status.is_terminal or now - last_log_fetch >= self.log_interval_seconds
                if due and self.follow_log and not self._streamed_to_end:
                    await self._print_new_log(hook, final=status.is_terminal)
                    last_log_fetch = now
                if status.is_terminal:
                    yield self._event(status.value, f"installation {self.installation_id} {status.value}")
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event(
                        "timeout", f"installation {self.installation_id} still running at the deadline"
                    )
                    return
                await asyncio.sleep(self.poll_interval_seconds)
        except Exception as err:  # every failure reaches the task as one clear event
            yield self._event(
                "error", f"{type(err).__name__}: {err}", permanent=isinstance(err, AirflowFailException)
            )
