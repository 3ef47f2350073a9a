"""``mpvss_segmenter``: the lifecycle node that segments a camera stream.

Unconfigured --configure--> Inactive --activate--> Active, and back with deactivate / cleanup;
shutdown from any state. Frames arrive on ``image`` (remap it), wait in a one-slot mailbox and
are segmented on a worker thread by a ``VideoSegmenter`` (key frames through the segmentor,
propagated masks in between); results go to ``~/labels``, ``~/confidence``, ``~/overlay``,
``~/class_confidence/<class>``, ``~/class_stats``, ``~/label_info`` and ``/diagnostics``.

Running it as a process (``ros2 run mpvss_ros mpvss_node``, ``mpvss node``) is `ros.node_main`.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from mpvss_ros.data.labels import PALETTE
from mpvss_ros.ros import params as P
from mpvss_ros.ros.conversions import (ImageError, check_compressed, check_image, decode_compressed, image_to_rgb,
                                       stamp_to_seconds)
from mpvss_ros.ros.diagnostics import FrameStats, LogThrottle, diagnostic_array
from mpvss_ros.ros.publishers import OUTPUT_QOS, OutputPublishers
from mpvss_ros.ros.worker import Controls, Mailbox, ModelLoad, ShutdownRequested, Worker
from mpvss_ros.runtime.schedule import KeyFrameSchedule
from mpvss_ros.runtime.segmenter import VideoSegmenter

NODE_NAME = "mpvss_segmenter"
RunnerFactory = Callable[..., Any]  # (model_dir, backend=, providers=, threads=, device=) -> Runner
_THROTTLE_S = 5.0
_SHUTDOWN_JOIN_S = 10.0  # a frame still in inference after this is abandoned (daemon thread)


def create_default_runner(model_dir, *, backend: str, providers, threads: int, device: str):
    from mpvss_ros.runtime.runners import create_runner
    return create_runner(model_dir, backend, providers=providers, threads=threads, device=device)


class SegmenterNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, *, runner_factory: RunnerFactory | None = None,
                 **kwargs):
        super().__init__(node_name, **kwargs)
        self._runner_factory = runner_factory or create_default_runner
        self.model_load = ModelLoad(self.context)  # `node_main.run` asks it whether a load was abandoned
        self._declaring = True
        for spec in P.SPECS:
            # Types are checked by params.check_value so that a wrong type in a parameter file
            # fails configure with a reason instead of crashing the process at start-up.
            self.declare_parameter(spec.name, spec.default, ParameterDescriptor(
                description=spec.description, additional_constraints=spec.constraints,
                dynamic_typing=True))
        # A whole number for a float parameter (`ros2 param set ... schedule.period_s 2`, or
        # `period_s: 2` in a file) would change its type to integer (dynamic typing): the value is
        # still coerced on use, but `ros2 param get/describe/dump` and rqt would show an integer.
        # Keep such values floats, from the start-up overrides and from every later set.
        whole = [p for p in (self.get_parameter(s.name) for s in P.SPECS if isinstance(s.default, float))
                 if p.type_ == Parameter.Type.INTEGER]
        if whole:  # no callbacks registered yet: nothing is checked here
            self.set_parameters(self._whole_numbers_as_floats(whole))
        self._declaring = False
        self.add_pre_set_parameters_callback(self._whole_numbers_as_floats)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._live = {s.name: s.default for s in P.SPECS if s.live}
        self._segment_lock = threading.Lock()  # the worker's VideoSegmenter vs. (re)configure
        self._controls = Controls()  # services -> worker, applied between frames
        self._last_header_stamp = None
        self._segmenter: VideoSegmenter | None = None
        self._runner = None
        self._model_dir = ""
        self._outputs: OutputPublishers | None = None
        self._diag_pub = None
        self._diag_timer = None
        self._subscription = None
        self._worker: Worker | None = None
        self._mailbox = Mailbox()
        self._stats = FrameStats()
        self._config: dict[str, Any] = {}
        self.last_error = ""
        self._throttle = LogThrottle(_THROTTLE_S)
        self.create_service(Trigger, "~/request_key_frame", self._on_request_key_frame)

    # ----------------------------------------------------------------- transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate every parameter, load the model and create the publishers.

        Any problem (bad value, model not found, unknown class in confidence_classes, backend
        error) logs one line with the reason and returns FAILURE: the node stays Unconfigured
        and can be configured again once the parameter is fixed.
        """
        try:
            self._configure()
        except Exception as exc:  # the reason goes to the log; the node stays usable
            self._release()
            if not self.context.ok():  # SIGINT/SIGTERM meanwhile: a shutdown, not a fault
                raise ShutdownRequested from None  # (as a shutdown mid-load does: see ModelLoad)
            self.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, (ValueError, OSError)) else str(exc)
            self.get_logger().error(f"configure failed: {self.last_error}")
            return TransitionCallbackReturn.FAILURE
        self.last_error = ""
        r = self._runner
        self.get_logger().info(
            f"configured: model {self._model_dir} ({r.backend}, {','.join(r.providers)}), "
            f"input {r.input_size[0]}x{r.input_size[1]} (HxW, as --size and model.json give it), "
            f"schedule {self._segmenter.schedule.settings}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, publish ~/label_info, subscribe to ``image`` and start the worker.

        The key-frame state starts afresh: the first frame after activation is a key frame.
        """
        try:
            return self._activate(state)
        except Exception:
            if not self.context.ok():  # SIGINT/SIGTERM meanwhile: nothing can be created on the
                raise ShutdownRequested from None  # dead context; a shutdown, not a failed transition
            raise

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        with self._segment_lock:
            self._segmenter.reset()
        self._outputs.publish_label_info(PALETTE, self._live["label_format"], self._model_dir)
        self._mailbox.clear()
        self._worker = Worker(self._mailbox, self._process, self._on_worker_error)
        self._worker.start()
        cfg = self._config
        qos = P.input_qos(cfg["input_reliability"], cfg["input_depth"])
        if cfg["input_transport"] == "compressed":  # image_transport's name: <resolved base>/compressed
            self._subscription = self.create_subscription(
                CompressedImage, self.resolve_topic_name("image") + "/compressed", self._on_image, qos)
        else:
            self._subscription = self.create_subscription(Image, "image", self._on_image, qos)
        # wall time, as the parameter says: under use_sim_time a paused bag must not silence health
        # output, nor a fast replay flood it
        self._diag_timer = self.create_timer(cfg["diagnostics_period_s"], self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"active: segmenting {self._subscription.topic_name}")
        if cfg["input_reliability"] == "best_effort" and \
                os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST" and \
                "fastrtps" in os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"):
            # measured: 1 of 150 best-effort 1024x2048 frames arrived in this configuration
            self.get_logger().warning(
                "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST makes Fast DDS drop the LARGE_DATA "
                "transports: large best-effort images are mostly lost; use the SUBNET range or "
                "input_reliability:=reliable")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames (the frame in progress finishes); the model stays loaded."""
        self._stop_input()
        self.get_logger().info("inactive: not taking frames")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model and the publishers; back to Unconfigured."""
        self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything, from whichever state the node was in."""
        self.release_all()
        # as lifecycle nodes do, the process stays (its services answer) until it is stopped
        self.get_logger().info(f"finalized (from {state.label}): everything released; "
                               "stop the process to end it")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and go back to Unconfigured."""
        self._stop_input()
        self._release()
        self.get_logger().error(f"error during a transition from {state.label}: released everything, "
                                "back to unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def release_all(self) -> None:
        """Stop taking frames (a frame still in inference after a while is abandoned) and free
        the model and the publishers: the shutdown transition, and the process on its way out."""
        self._stop_input(_SHUTDOWN_JOIN_S)
        self._release()

    # ----------------------------------------------------------------- configure helpers
    def _configure(self) -> None:
        self._release()
        values = {s.name: self.get_parameter(s.name).value for s in P.SPECS}
        for name, value in values.items():
            reason = P.check_value(name, value)
            if reason:
                raise ValueError(f"parameter {name} {reason}")
        values = {n: P.coerce(n, v) for n, v in values.items()}
        settings = P.schedule_settings(values)
        model_dir = P.resolve_model_dir(values["model"])
        providers = "auto" if values["providers"] == ["auto"] else values["providers"]
        factory = self._runner_factory  # not self: a load abandoned at shutdown must not keep the node
        # a load can take minutes (TensorRT engines): say what is under way before it starts
        self.get_logger().info(f"loading model {model_dir} (backend {values['backend']}, providers "
                               f"{','.join(values['providers'])})")
        runner = self.model_load(lambda: factory(model_dir, backend=values["backend"], providers=providers,
                                            threads=values["threads"], device=values["device"]))
        self._runner, self._model_dir = runner, str(model_dir)
        classes = P.resolve_confidence_classes(values["confidence_classes"], list(runner.class_names))
        self._segmenter = VideoSegmenter(runner, KeyFrameSchedule(settings),
                                         output_size=values["output_resolution"])
        self._controls.take()  # changes made before this configure are in `settings` already
        self._outputs = OutputPublishers(self, runner.class_names, classes)
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._config = values
        self._live = {s.name: values[s.name] for s in P.SPECS if s.live}
        self._stats = FrameStats()

    def _stop_input(self, join_timeout_s: float = 30.0) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._worker is not None:
            if not self._worker.stop(join_timeout_s):
                self.get_logger().warning(f"the frame in inference did not finish within "
                                          f"{join_timeout_s:.0f} s; not waiting for it")
            self._worker = None
        for _ in range(self._mailbox.clear()):
            self._stats.on_dropped()

    def _release(self) -> None:
        if self._outputs is not None:
            self._outputs.destroy()
            self._outputs = None
        if self._diag_pub is not None:
            self.destroy_lifecycle_publisher(self._diag_pub)
            self._diag_pub = None
        # The worker holds the lock during inference; a frame abandoned at shutdown must not
        # keep us here (when it ends it finds no segmenter or outputs and publishes nothing).
        locked = self._segment_lock.acquire(timeout=1.0)
        try:
            self._segmenter = None
            self._runner = None
        finally:
            if locked:
                self._segment_lock.release()

    # ----------------------------------------------------------------- frames
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Subscription callback: check the header fields and post the frame; never infers."""
        self._stats.on_received()
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg, self._live["max_image_pixels"])
            else:
                check_image(msg, self._live["max_image_pixels"])
        except ImageError as exc:
            self._reject(exc)
            return
        if self._mailbox.put((msg, time.perf_counter())):
            self._stats.on_dropped()

    def _reject(self, exc: ImageError) -> None:
        self._stats.on_bad(str(exc))
        if self._throttle.ready(exc.kind):
            self.get_logger().error(f"bad image skipped: {exc}")

    def _process(self, item) -> None:
        msg, received_at = item
        if isinstance(msg, CompressedImage):  # checked in the callback; decoded here, off its thread
            try:
                rgb = decode_compressed(msg)
            except ImageError as exc:
                self._reject(exc)
                return
        else:
            rgb = image_to_rgb(msg)
        with self._segment_lock:
            segmenter = self._segmenter
            if segmenter is None:
                return
            schedule, key_requested = self._controls.take()
            if schedule:
                segmenter.schedule.update(**schedule)
                self.get_logger().info(f"schedule now {segmenter.schedule.settings}")
            if key_requested:
                segmenter.request_key_frame()
            result = segmenter.process(rgb, stamp_to_seconds(msg.header.stamp), stream=msg.header.frame_id)
        if result.reset_reason:
            self.get_logger().info(f"key-frame state reset: {result.reset_reason}")
        elif not result.key_frame and segmenter.schedule.settings.mode == "timer" and \
                msg.header.stamp == self._last_header_stamp and self._throttle.ready("timer stamps"):
            self.get_logger().warning(
                "schedule.mode timer: frames carry the same header stamp, so message time does not "
                "advance and no key frame comes until it does (stamp the images, or use interval)")
        self._last_header_stamp = msg.header.stamp
        outputs = self._outputs
        if outputs is None:
            return
        outputs.publish(result, rgb, msg.header, label_format=self._live["label_format"],
                        overlay_alpha=self._live["overlay_alpha"],
                        total_ms=(time.perf_counter() - received_at) * 1e3)
        self._stats.on_processed(result.key_frame, (time.perf_counter() - received_at) * 1e3)

    def _on_worker_error(self, exc: BaseException) -> None:
        """An exception while segmenting one frame: counted and logged; the next frame is served."""
        if not self.context.ok():  # SIGINT/SIGTERM shut the context down under a busy worker
            return
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        self._stats.on_failed(reason)
        if self._throttle.ready(f"inference {type(exc).__name__}"):
            self.get_logger().error(f"frame failed: {reason}")

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None or self._runner is None:
            return
        self._diag_pub.publish(diagnostic_array(
            self.get_clock().now().to_msg(), self.get_name(), self._stats.snapshot(),
            self._mailbox.pending(), self._runner.backend, list(self._runner.providers),
            self._model_dir))

    def stats(self) -> dict:
        """Counter snapshot (frames received/processed/dropped/bad, key fraction, latency)."""
        return self._stats.snapshot()

    # ----------------------------------------------------------------- services, parameters
    def _on_request_key_frame(self, request, response):
        if self._segmenter is None:
            response.success, response.message = False, "not configured: no model loaded"
            return response
        self._controls.request_key_frame()  # the worker applies it before the next frame
        response.success, response.message = True, "the next frame will be a key frame"
        return response

    @staticmethod
    def _whole_numbers_as_floats(parameters: list) -> list:
        """The integers among ``parameters`` whose default is a float, as doubles (pre-set
        callback: the others pass unchanged, wrong types are left to the validation)."""
        out = []
        for p in parameters:
            spec = P.SPEC_BY_NAME.get(p.name)
            if spec is not None and isinstance(spec.default, float) and \
                    p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def _validate_parameters(self, parameters) -> SetParametersResult:
        if self._declaring:  # initial values: configure reports bad ones with a reason
            return SetParametersResult(successful=True)
        changes = {}
        for p in parameters:
            reason = P.check_value(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=f"{p.name} {reason}")
            if p.name in P.SPEC_BY_NAME:
                changes[p.name] = P.coerce(p.name, p.value)
        runner = self._runner
        same_model = "model" not in changes and self._config.get("model") == \
            P.coerce("model", self.get_parameter("model").value)
        if "confidence_classes" in changes and runner is not None and same_model:  # refuse now, not at configure
            try:
                P.resolve_confidence_classes(changes["confidence_classes"], list(runner.class_names))
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        schedule_changes = {k: v for k, v in changes.items() if k.startswith(P.SCHEDULE_PREFIX)}
        if not schedule_changes:  # an out-of-range schedule from start-up does not block other fixes
            return SetParametersResult(successful=True)
        kept = {n: self.get_parameter(n).value for n in P.SPEC_BY_NAME
                if n.startswith(P.SCHEDULE_PREFIX) and n not in schedule_changes}
        if any(P.check_value(n, v) for n, v in kept.items()):
            # a wrong type kept from start-up (period_s: "abc"): configure reports it; coercing it
            # here would raise out of the parameter service and take the node down
            return SetParametersResult(successful=True)
        schedule = {n: P.coerce(n, v) for n, v in kept.items()}
        schedule.update(schedule_changes)
        try:
            P.schedule_settings(schedule)
        except (TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        """Live parameters take effect now; the rest on the next configure."""
        if self._declaring:
            return
        live = {p.name: P.coerce(p.name, p.value) for p in parameters
                if p.name in P.SPEC_BY_NAME and P.SPEC_BY_NAME[p.name].live}
        # only values that differ from the running configuration's (a whole parameter file
        # loaded with `ros2 param load` re-sets every parameter, most of them unchanged)
        later = [p.name for p in parameters if p.name in P.SPEC_BY_NAME and not P.SPEC_BY_NAME[p.name].live
                 and P.coerce(p.name, p.value) != self._config.get(p.name)]
        if later and self._runner is not None:
            self.get_logger().info(f"{', '.join(later)}: set; takes effect at the next configure")
        self._live.update(live)
        schedule = {k[len(P.SCHEDULE_PREFIX):]: v for k, v in live.items()
                    if k.startswith(P.SCHEDULE_PREFIX)}
        if schedule:  # configure builds the schedule from the parameters; active frames get it here
            self._controls.update_schedule(**schedule)
        if "label_format" in live and self._outputs is not None:
            self._outputs.publish_label_info(PALETTE, live["label_format"], self._model_dir)

