"""hpe_ros.ros.inbox: slow callbacks run in batches from a bounded inbox, never from a growing executor queue."""
from __future__ import annotations

import time

import pytest

from hpe_ros.ros.inbox import Inbox


class Recorder:
    def __init__(self):
        self.scheduled = []
        self.seen = []
        self.errors = []

    def schedule(self, fn):
        self.scheduled.append(fn)


def filled(depth: int, messages: int) -> tuple[Recorder, Inbox]:
    """An inbox of one subscription of `depth` after messages 0..messages-1 arrived, none run yet."""
    r = Recorder()
    inbox = Inbox(r.schedule)
    put = inbox.wrap(r.seen.append, depth=depth)
    for m in range(messages):
        put(m)
        assert len(inbox) <= depth
    return r, inbox


def test_messages_run_in_arrival_order_in_one_batch_per_schedule():
    r = Recorder()
    inbox = Inbox(r.schedule)
    a = inbox.wrap(lambda m: r.seen.append(("a", m)), depth=5)
    b = inbox.wrap(lambda m: r.seen.append(("b", m)), depth=5)
    a(1), b(2), a(3)
    assert len(r.scheduled) == 1 and len(inbox) == 3 and inbox.capacity == 10   # one task for the three
    r.scheduled.pop()()
    assert r.seen == [("a", 1), ("b", 2), ("a", 3)] and len(inbox) == 0 and inbox.ran == 3
    a(4)
    assert len(r.scheduled) == 1                                                 # the next batch is scheduled anew


def test_a_full_inbox_sheds_the_oldest_and_counts_it():
    r, inbox = filled(depth=3, messages=10)
    r.scheduled.pop()()
    assert r.seen == [7, 8, 9] and inbox.shed == 7 and inbox.ran == 3


def test_the_inbox_status_warns_when_messages_were_shed_since_the_last_report():
    from diagnostic_msgs.msg import DiagnosticStatus

    from hpe_ros.ros.diagnostics import inbox_status

    _, inbox = filled(depth=2, messages=5)
    warn = inbox_status("fusion_node", inbox, inbox.shed)
    values = {kv.key: kv.value for kv in warn.values}
    assert warn.level == DiagnosticStatus.WARN and "shed the 3 oldest" in warn.message
    assert values["shed"] == "3" and values["waiting"] == "2" and values["capacity"] == "2"
    assert inbox_status("fusion_node", inbox, 0).level == DiagnosticStatus.OK


def test_a_failing_callback_costs_only_its_message():
    r = Recorder()
    inbox = Inbox(r.schedule, on_error=lambda exc, cb: r.errors.append(str(exc)))

    def fussy(m):
        if m == 2:
            raise ValueError("bad message 2")
        r.seen.append(m)
    put = inbox.wrap(fussy, depth=5)
    for m in (1, 2, 3):
        put(m)
    r.scheduled.pop()()
    assert r.seen == [1, 3] and r.errors == ["bad message 2"]
    no_handler = Inbox(r.schedule)
    no_handler.wrap(fussy, depth=1)(2)
    with pytest.raises(ValueError):
        r.scheduled.pop()()


def test_clear_forgets_what_waits_and_the_next_message_schedules_again():
    r = Recorder()
    inbox = Inbox(r.schedule)
    put = inbox.wrap(r.seen.append, depth=4)
    put(1)
    inbox.clear()
    assert len(inbox) == 0 and inbox.capacity == 0           # an activation after this wraps anew
    put = inbox.wrap(r.seen.append, depth=4)
    assert inbox.capacity == 4
    put(2)
    assert len(r.scheduled) == 2
    r.scheduled[-1]()
    assert r.seen == [2]


def test_a_slow_node_on_the_events_executor_sheds_instead_of_queueing(ros_context):
    """Real rclpy over DDS: 200 messages/s for 1 s into a callback that takes 10 ms. The node runs the
    newest messages in arrival order, the old ones are dropped (by the reader's keep-last history or the
    inbox) and what waits in the inbox never exceeds its capacity."""
    import threading

    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Int32

    from hpe_ros.ros.base import ManagedNode, make_executor

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
    seen, waiting = [], []

    node = ManagedNode("inbox_slow_node", context=ros_context)

    def on_message(msg):  # a slow callback: 10 ms a message
        waiting.append(len(node.inbox))
        seen.append(msg.data)
        time.sleep(0.01)
    node.own_subscription(Int32, "inbox_test", on_message, QoSProfile(depth=10), inbox=True)
    tester = Node("inbox_tester", context=ros_context)
    pub = tester.create_publisher(Int32, "inbox_test", qos)
    executor = make_executor(context=ros_context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 10
        while node.count_publishers("inbox_test") == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)

        def publish():
            for i in range(200):
                pub.publish(Int32(data=i))
                time.sleep(0.005)
        sender = threading.Thread(target=publish)
        sender.start()
        deadline = time.monotonic() + 15
        while (not seen or seen[-1] != 199) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        sender.join()
        assert seen and seen[-1] == 199                          # the newest message ran
        assert seen == sorted(seen)                              # in arrival order
        assert node.inbox.ran == len(seen) < 170                # it could not run them all: some were dropped
        assert max(waiting) < node.inbox.capacity == 10
    finally:
        executor.shutdown()
        node.destroy_node()
        tester.destroy_node()
