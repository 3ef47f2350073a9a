# Source this (bash) after tools/bootstrap: the environment the ROS 2 wheels and our colcon
# build need. Safe under `set -u`, unlike colcon's setup.bash.
_MPVSS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_MPVSS_VENV="${MPVSS_VENV:-$HOME/.cache/mpvss_ros/venv}"
_MPVSS_INSTALL="$_MPVSS_ROOT/.colcon/install"
_MPVSS_SITE="$_MPVSS_INSTALL/lib/python3.11/site-packages"
for _mpvss_d in "$_MPVSS_INSTALL"/lib/python3.*/site-packages; do  # whichever Python built it
  if [ -d "$_mpvss_d" ]; then _MPVSS_SITE="$_mpvss_d"; fi
done
unset _mpvss_d
export VIRTUAL_ENV="$_MPVSS_VENV"
export PATH="$_MPVSS_VENV/bin:$PATH"
# The wheels install share/ and the ament index under the venv prefix; nothing else sets these.
export AMENT_PREFIX_PATH="$_MPVSS_INSTALL:$_MPVSS_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_MPVSS_INSTALL:$_MPVSS_VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$_MPVSS_INSTALL/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Generated message modules (mpvss_ros.msg) live in the colcon install; mpvss_ros/__init__.py
# merges that directory into the package path.
export PYTHONPATH="$_MPVSS_ROOT:$_MPVSS_SITE${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Large images over Fast DDS: without LARGE_DATA, best-effort 1024x2048 frames are lost entirely.
# sockets_size sizes the shared-memory segment (twice it) that a publisher writes its samples into:
# Fast DDS 2.14 (Jazzy) keeps the 0.5 MB default even with LARGE_DATA, and best-effort 6 MB frames
# are then mostly lost (measured: 0-21 of 90 arrive); Fast DDS 3.2 (Kilted) gave LARGE_DATA a
# 9 MB one here. 8MB (a 16 MB segment) holds two 1024x2048 rgb8 frames on both.
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-LARGE_DATA?sockets_size=8MB}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
