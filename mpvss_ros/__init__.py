"""mpvss_ros: efficient video semantic segmentation for ROS 2 (MPVSS).

The generated ROS message module ``mpvss_ros.msg`` is built by colcon into a separate
install tree; extend_path merges every ``mpvss_ros`` directory on ``sys.path`` so that the
source package and the generated messages import as one package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
