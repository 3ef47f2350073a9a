"""The segmentation node as a process: `main` (``ros2 run mpvss_ros mpvss_node``) only spins it,
a launch file or a lifecycle manager drives the transitions; `run(..., autostart=True)`
configures and activates it itself (``mpvss node``)."""
from __future__ import annotations

import sys

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import TransitionCallbackReturn

from mpvss_ros.ros.node import NODE_NAME, RunnerFactory, SegmenterNode
from mpvss_ros.ros.worker import ShutdownRequested


def run(args: list[str] | None = None, *, autostart: bool = False,
        runner_factory: RunnerFactory | None = None) -> int:
    """Create the node from ROS arguments and spin it until shutdown.

    With ``autostart`` the node configures and activates itself; a failed transition ends the
    process with status 1 and the reason on stderr. A signal mid-load exits at once (ModelLoad).
    """
    from mpvss_ros.ros.large_buffers import keep_large_buffers_on_heap

    keep_large_buffers_on_heap()  # camera frames are megabytes: no page faults per message
    rclpy.init(args=args)
    node = SegmenterNode(runner_factory=runner_factory)
    load = node.model_load
    code = _spin(node, autostart)
    del node  # a destroyed node holds its context's DDS participant until it is collected
    load.exit_if_abandoned(code)
    return code


def _spin(node: SegmenterNode, autostart: bool) -> int:
    """Take the node through autostart (if asked) and spin it; destroys it and shuts rclpy down."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    try:
        if autostart:
            # a signal during start-up shuts the context down under the transition: exit quietly
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                if not rclpy.ok():
                    return 0
                print(f"mpvss node: error: configure failed: {node.last_error}", file=sys.stderr)
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                if not rclpy.ok():
                    return 0
                print("mpvss node: error: activate failed", file=sys.stderr)
                return 1
        # One executor thread is enough: callbacks only post frames; inference has its own thread.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, ShutdownRequested):
        pass
    except _rclpy.RCLError:
        # A signal can shut the context down between the executor's check of it and building its
        # wait set (rclpy raises "the given context is not valid" then; seen under CPU load):
        # that is an external shutdown too. Anything else is a real failure.
        if rclpy.ok():
            raise
    finally:
        # Said before rclpy.shutdown: that closes the ROS log file (SIGINT raises
        # KeyboardInterrupt here before rclpy's signal thread has shut the context down).
        if node.model_load.abandoned():
            rclpy.logging.get_logger(NODE_NAME).info(
                "shutdown requested while the model was loading: exiting without waiting for it")
        node.release_all()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """``ros2 run mpvss_ros mpvss_node``: spin the lifecycle node; transitions come from outside."""
    return run(sys.argv if args is None else args)


if __name__ == "__main__":
    sys.exit(main())
