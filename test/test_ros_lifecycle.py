"""Every lifecycle transition of mpvss_segmenter through its lifecycle services, over real DDS
(node in its own process, this process the client)."""
from __future__ import annotations

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from mpvss_ros.msg import ClassStats
from sensor_msgs.msg import Image
from test_ros_helpers import NODE, RosClient, node_command, rgb_image_msg, wait_for, write_slow_onnx

pytestmark = pytest.mark.ros


@pytest.fixture
def client(ros_domain):
    c = RosClient()
    yield c
    c.close()


def _frame(value: int) -> np.ndarray:
    img = np.zeros((48, 96, 3), np.uint8)
    img[..., 0] = value
    return img


def test_every_transition_and_configure_failure_then_success(client, spawn, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    missing = tmp_path / "no_such_model"
    node = spawn(node_command("-p", f"model:={missing}", "-r", "image:=/image"), name="node")

    wait_for(lambda: client.get_state() == "unconfigured", what="node start")
    # configure fails on a bad model path: FAILURE, reason logged, still Unconfigured
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is False
    assert client.get_state() == "unconfigured"
    wait_for(lambda: f"configure failed: model directory not found: {missing}" in node.log_text(),
             what="the configure failure reason in the node's log")

    # an unknown class in confidence_classes also fails configure, with the class named
    assert all(r.successful for r in client.set_parameters(
        model=str(model_dir), confidence_classes=["person", "unicorn"]))
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is False
    assert client.get_state() == "unconfigured"
    wait_for(lambda: "confidence_classes: unknown class 'unicorn'" in node.log_text(),
             what="the unknown class in the node's log")

    # fixed: configure succeeds (configurable again after failures)
    assert all(r.successful for r in client.set_parameters(confidence_classes=["traffic light"]))
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is True
    assert client.get_state() == "inactive"

    # activate: frames are segmented
    client.subscribe(f"{NODE}/class_stats", ClassStats)
    client.subscribe(f"{NODE}/labels", Image)
    assert client.change_state(Transition.TRANSITION_ACTIVATE) is True
    assert client.get_state() == "active"
    client.wait_matched(f"{NODE}/labels")
    pub = client.image_publisher("/image")
    labels = client.send_and_wait(pub, rgb_image_msg(_frame(130), 1.0), f"{NODE}/labels", resend_every=3.0)
    assert np.frombuffer(labels.data, np.uint8).max() == 10  # 130 // 13

    # deactivate: no more frames taken, model kept
    assert client.change_state(Transition.TRANSITION_DEACTIVATE) is True
    assert client.get_state() == "inactive"
    client.clear()
    pub.publish(rgb_image_msg(_frame(26), 2.0))
    # reactivating without configure works (model kept) and serves the next frame
    assert client.change_state(Transition.TRANSITION_ACTIVATE) is True
    wait_for(lambda: pub.get_subscription_count() > 0, what="re-created image subscription")
    labels = client.send_and_wait(pub, rgb_image_msg(_frame(52), 3.0), f"{NODE}/labels", resend_every=3.0)
    stamps = [m.header.stamp.sec for m in client.messages(f"{NODE}/labels")]
    assert 2 not in stamps  # the frame sent while inactive was never processed
    assert np.frombuffer(labels.data, np.uint8).max() == 4

    # deactivate + cleanup: back to Unconfigured, the model released
    assert client.change_state(Transition.TRANSITION_DEACTIVATE) is True
    assert client.change_state(Transition.TRANSITION_CLEANUP) is True
    assert client.get_state() == "unconfigured"
    reply = client.request_key_frame()
    assert reply.success is False and "not configured" in reply.message

    # configure + activate again, then shutdown straight from Active
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is True
    assert client.change_state(Transition.TRANSITION_ACTIVATE) is True
    assert client.change_state(Transition.TRANSITION_ACTIVE_SHUTDOWN) is True
    assert client.get_state() == "finalized"
    wait_for(lambda: "finalized (from active): everything released" in node.log_text(),
             what="the shutdown transition in the node's log")
    assert node.poll() is None  # still answering services after finalize


@pytest.mark.parametrize("transition", ["unconfigured", "inactive"])
def test_shutdown_from_unconfigured_and_inactive(client, spawn, tmp_path, transition):
    spawn(node_command("-p", f"model:={tmp_path}"), name="node")
    wait_for(lambda: client.get_state() == "unconfigured", what="node start")
    if transition == "inactive":
        assert client.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert client.change_state(Transition.TRANSITION_INACTIVE_SHUTDOWN) is True
    else:
        assert client.change_state(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) is True
    assert client.get_state() == "finalized"


def test_bad_parameter_values_fail_configure_or_are_rejected(client, spawn, tmp_path):
    # a wrong type in the start-up parameters does not crash the process; configure says why
    node = spawn(node_command("-p", f"model:={tmp_path}", "-p", "overlay_alpha:=bright"), name="node")
    wait_for(lambda: client.get_state() == "unconfigured", what="node start")
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is False
    wait_for(lambda: "parameter overlay_alpha must be a number, got 'bright'" in node.log_text(),
             what="the bad parameter in the node's log")
    # at run time, out-of-range values are rejected by the parameter service with a reason
    (res,) = client.set_parameters(schedule__interval=0)
    assert not res.successful and "schedule.interval must be in 1..10000, got 0" in res.reason
    (res,) = client.set_parameters(schedule__min_interval=50)  # above max_interval (30)
    assert not res.successful and "min_interval" in res.reason
    (res,) = client.set_parameters(backend="tensorflow")
    assert not res.successful and "backend must be one of onnxruntime, torch" in res.reason
    assert all(r.successful for r in client.set_parameters(overlay_alpha=0.3))
    assert client.change_state(Transition.TRANSITION_CONFIGURE) is True
    # with a model loaded, an unknown class is refused now rather than at the next configure
    (res,) = client.set_parameters(confidence_classes=["unicorn"])
    assert not res.successful and "confidence_classes: unknown class 'unicorn'" in res.reason
    # a deferred parameter set to the value it already has is not announced (`ros2 param load`)
    assert all(r.successful for r in client.set_parameters(backend="onnxruntime"))
    assert all(r.successful for r in client.set_parameters(confidence_classes=["car"]))
    wait_for(lambda: "confidence_classes: set; takes effect at the next configure" in node.log_text(),
             what="the deferred parameter in the log")
    assert "backend: set" not in node.log_text()


def test_services_answer_while_a_frame_is_in_inference(client, spawn, tmp_path):
    """Parameter, lifecycle and key-frame services never wait for the inference in progress; the
    schedule change and the key-frame request reach the next frame."""
    import time

    from mpvss_ros.msg import ClassStats

    # the first frame stays 15 s in inference (long enough for three service calls on a loaded machine);
    # it is sent once, so reliably: a best-effort reader that has not yet matched our writer drops it
    node = spawn(node_command("-p", f"model:={tmp_path}", "-p", "input_reliability:=reliable", "-r", "image:=/image",
                              first_delay_s=15.0, autostart=True), name="node")
    wait_for(lambda: client.get_state() == "active", 60, "node active")
    stats_topic = f"{NODE}/class_stats"
    client.subscribe(stats_topic, ClassStats)
    client.wait_matched(stats_topic)
    pub = client.image_publisher("/image")
    wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node's subscription")

    def answered(sec):
        return [m for m in client.messages(stats_topic) if m.header.stamp.sec == sec]

    pub.publish(rgb_image_msg(_frame(13), 1.0))
    time.sleep(1.0)  # the worker has taken it and sleeps in the runner
    assert all(r.successful for r in client.set_parameters(schedule__interval=50))
    assert client.get_state() == "active"
    assert client.request_key_frame().success
    assert not answered(1)  # all three replies came while frame 1 was still in inference
    first = wait_for(lambda: answered(1), 30, "frame 1's result")[0]
    assert first.key_frame  # the first frame after activation
    second = client.send_and_wait(pub, rgb_image_msg(_frame(26), 2.0), stats_topic)
    assert second.key_frame  # the request, applied before frame 2
    third = client.send_and_wait(pub, rgb_image_msg(_frame(39), 3.0), stats_topic)
    assert not third.key_frame
    wait_for(lambda: "schedule now" in node.log_text() and "interval=50" in node.log_text(), 30,
             "the schedule change in the log")


def test_diagnostics_run_on_wall_time_under_sim_time(client, spawn, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    client.subscribe("/diagnostics", DiagnosticArray)
    # use_sim_time and no /clock at all (a bag not yet playing): health output still comes
    spawn(node_command("-p", f"model:={tmp_path}", "-p", "use_sim_time:=true", "-p", "diagnostics_period_s:=0.5",
                       autostart=True), name="node")
    wait_for(lambda: len(client.messages("/diagnostics")) >= 3, 60, "three /diagnostics messages")


@pytest.mark.parametrize("sig,how", [("SIGTERM", "autostart"), ("SIGINT", "autostart"), ("SIGTERM", "service")])
def test_a_signal_while_the_model_loads_exits_at_once(client, spawn, tmp_path, sig, how):
    """A model load cannot be interrupted (here a 30 s one, in the runner factory): a signal during
    configure must still end the process promptly, cleanly, without rclpy's transition error, and
    take the node off the ROS graph (not leave it to the DDS lease, 20 s)."""
    import signal
    import time

    from lifecycle_msgs.srv import ChangeState

    log_dir = tmp_path / "ros_log"
    node = spawn(node_command("-p", f"model:={tmp_path}", autostart=how == "autostart", load_s=30.0), name="node",
                 env={"ROS_LOG_DIR": str(log_dir)})
    name = NODE.strip("/")
    wait_for(lambda: name in client.node.get_node_names(), 60, "the node on the graph")
    if how == "service":  # configure from a lifecycle manager, as under ros2 launch
        wait_for(lambda: client.get_state() == "unconfigured", 60, "node start")
        change = client.node.create_client(ChangeState, f"{NODE}/change_state")
        change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
    wait_for(lambda: "loading the model" in node.log_text(), 60, "configure under way")
    t0 = time.monotonic()
    node.send_signal(getattr(signal, sig))
    code = node.wait(10)  # raises TimeoutExpired if it waits for the load
    print(f"{sig} during the load ({how}): exit {code} after {time.monotonic() - t0:.2f} s")
    log = node.log_text()
    assert code == 0, log
    assert "Traceback" not in log and "Failed to complete transition" not in log, log
    assert "configure failed" not in log, log
    # the exit skips interpreter teardown: the ROS log file must still hold what was logged
    files = list(log_dir.glob("*.log"))
    assert len(files) == 1, (files, log)
    written = files[0].read_text()
    assert f"loading model {tmp_path}" in written and "shutdown requested while the model was loading" in written, \
        (written, log)
    wait_for(lambda: name not in client.node.get_node_names(), 10, "the node gone from the graph")


def test_a_signal_during_a_real_onnx_session_load(spawn, tmp_path, ros_domain):
    """The same with ONNX Runtime building a session (~6 s here): the wait must not hold up the
    shutdown (the build releases the GIL), and the build left running must not crash the exit."""
    import signal

    slow = write_slow_onnx(tmp_path / "slow.onnx")
    node = spawn(node_command("-p", f"model:={tmp_path}", autostart=True, load_onnx=slow), name="node")
    wait_for(lambda: "loading the model" in node.log_text(), 60, "configure under way")
    node.send_signal(signal.SIGTERM)
    code = node.wait(60)
    log = node.log_text()
    assert code == 0 and "terminate called" not in log and "Traceback" not in log, (code, log)
    assert "model loaded" not in log, log  # it exited before the session was built


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_as_the_load_ends_is_a_quiet_shutdown(client, spawn, tmp_path, sig):
    """The load returns just after the context shut down: the rest of configure fails on the dead
    context, which is a shutdown, not a configure failure (no "configure failed", no rclpy
    "Failed to complete transition"), and the node does not go on to activate."""
    node = spawn(node_command("-p", f"model:={tmp_path}", autostart=True, load_s=0.5, signal_at_load_end=sig),
                 name="node")
    code = node.wait(60)
    log = node.log_text()
    assert code == 0, log
    assert "loading the model" in log and "Failed to complete transition" not in log, log
    assert "Traceback" not in log and "configured:" not in log and "active:" not in log, log


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_node_activates_is_a_quiet_shutdown(client, spawn, tmp_path, sig):
    """The context shuts down half-way through activate: the subscription cannot be created, which
    is a shutdown, not a failed transition (rclpy logged "Failed to complete transition")."""
    node = spawn(node_command("-p", f"model:={tmp_path}", autostart=True, signal_at_activate=sig), name="node")
    code = node.wait(60)
    log = node.log_text()
    assert code == 0, log
    assert "configured:" in log and "Failed to complete transition" not in log, log
    assert "Traceback" not in log and "active: segmenting" not in log and "activate failed" not in log, log


def test_a_transition_that_raises_releases_everything_and_says_so(ros_domain, tmp_path, capfd):
    """on_error: an unexpected exception inside a transition (here activate) releases the model
    and the input, logs it, and leaves the node Unconfigured and configurable again."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from test_ros_helpers import ScriptedRunner

    from mpvss_ros.ros.node import SegmenterNode

    context = rclpy.Context()
    rclpy.init(args=["node", "--ros-args", "-p", f"model:={tmp_path}"], context=context)
    try:
        node = SegmenterNode("mpvss_on_error", context=context,
                             runner_factory=lambda model_dir, **kw: ScriptedRunner())
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            activate = node._activate
            node._activate = lambda state: (_ for _ in ()).throw(RuntimeError("camera gone"))
            assert node.trigger_activate() == TransitionCallbackReturn.ERROR
            assert node._state_machine.current_state[1] == "unconfigured"
            assert node._runner is None and node._worker is None
            assert "error during a transition from inactive: released everything" in capfd.readouterr().err
            node._activate = activate
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
