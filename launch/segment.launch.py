"""Launch the mpvss_segmenter lifecycle node and (by default) take it to Active.

    ros2 launch mpvss_ros segment.launch.py image:=/camera/image_raw
    ros2 launch mpvss_ros segment.launch.py namespace:=robot1 params_file:=my.yaml autostart:=false
    ros2 launch mpvss_ros segment.launch.py input_transport:=compressed   # <image>/compressed, JPEG / PNG

With autostart the launch emits the lifecycle `configure` transition once the node is up and
`activate` once it reports Inactive after its first successful configure (launch_ros ChangeState
events and a one-shot OnStateTransition handler, the pattern of launch_ros' lifecycle example).
If configure fails (bad model path, bad parameter) the node logs the reason and stays
Unconfigured; `ros2 lifecycle set <node> configure` after fixing the parameter then activates it.
Later transitions from outside are left alone: deactivate stays Inactive, and cleanup + configure
(e.g. to load another model) stays Inactive until `ros2 lifecycle set <node> activate`.

`input_transport` overrides the parameter file only when given: the node is built in an
OpaqueFunction so that an empty argument adds no parameter at all (a substitution in the
parameter list would always set one, overriding the file with an empty value). So the node
exists only once the description runs: `ros2 launch --print` shows an OpaqueFunction, and a
parent launch file that wants the node action itself can call `node_actions(context)`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.descriptions import ParameterValue
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

NODE_NAME = "mpvss_segmenter"


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("mpvss_ros"), "config", "segment.yaml"]),
            description="ROS 2 parameter file for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input image topic (remaps `image`; compressed input: <image>/compressed)"),
        DeclareLaunchArgument("input_transport", default_value="",
                              description="raw (sensor_msgs/Image) or compressed (CompressedImage on "
                              "<image>/compressed); empty: the parameter file's value"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the node after start"),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=node_actions)])


def node_actions(context) -> list:
    """The node, its autostart configure event and activate-on-inactive handler."""
    autostart = LaunchConfiguration("autostart")
    parameters = [LaunchConfiguration("params_file"),
                  {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}]
    transport = LaunchConfiguration("input_transport").perform(context).strip()
    if transport:
        parameters.append({"input_transport": transport})
    node = LifecycleNode(
        package="mpvss_ros",
        executable="mpvss_node",
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        parameters=parameters,
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen",
    )

    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart))

    # start_state='configuring' so that a later deactivate (active -> inactive) is not undone,
    # and handle_once so that a later cleanup + configure from outside (`ros2 lifecycle set`, to
    # change the model) leaves the node Inactive: only the first successful configure activates.
    # A failed configure (configuring -> unconfigured) does not match and so does not use it up:
    # after fixing the parameter, `ros2 lifecycle set <node> configure` still ends in Active.
    activate_after_configure = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            handle_once=True,
            entities=[
                LogInfo(msg=f"{NODE_NAME} configured, activating"),
                EmitEvent(event=ChangeState(
                    lifecycle_node_matcher=matches_action(node),
                    transition_id=Transition.TRANSITION_ACTIVATE)),
            ]),
        condition=IfCondition(autostart))

    return [activate_after_configure, node, configure]
