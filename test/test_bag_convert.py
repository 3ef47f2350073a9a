"""`mpvss bag convert`: Cityscapes-style folder -> rosbag2 MCAP, read back two independent ways."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from mpvss_ros.data import bag
from mpvss_ros.data.cityscapes import write_image, write_label_ids, image_path, label_path

H, W = 24, 40
CITY = "testcity"


def _make_folder(root, split="val"):
    """Two sequences of 3 frames; frame 1 of each has no ground truth. Returns the source arrays."""
    rng = np.random.default_rng(7)
    source = {}
    for seq in (1, 2):
        for frame in (10, 11, 12):
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            write_image(image_path(root, split, CITY, seq, frame), image)
            labels = None
            if frame != 11:
                labels = rng.integers(0, 34, (H, W), dtype=np.uint8)
                write_label_ids(label_path(root, split, CITY, seq, frame), labels)
            source[f"{CITY}_{seq:06d}_{frame:06d}"] = (image, labels)
    return source


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    source = _make_folder(root)
    out = root / "bag"
    summary = bag.convert_sequences(root, "val", out, rate_hz=10.0, progress=False)
    return source, out, summary


def test_summary_counts_frames_and_sequences(converted):
    source, out, summary = converted
    assert summary.frames == 6
    assert summary.ground_truth_frames == 4
    assert summary.sequences == [f"{CITY}_000001_000010", f"{CITY}_000002_000010"]
    assert summary.size == (H, W)


def test_rosbags_reads_back_equal_values(converted):
    source, out, _ = converted
    records = list(bag.read_records(out))
    assert [r.name for r in records] == list(source)
    for r in records:
        image, labels = source[r.name]
        np.testing.assert_array_equal(r.image(), image)
        if labels is None:
            assert r.label_ids is None
        else:
            np.testing.assert_array_equal(r.label_ids, labels)
        assert r.camera_info_cdr is not None
    # Stamps: 10 Hz inside a sequence, a 1 s gap between sequences, and header stamp = log time.
    stamps = np.array([r.stamp_ns for r in records], dtype=np.int64)
    assert stamps[0] == bag.DEFAULT_START_NS
    np.testing.assert_array_equal(np.diff(stamps), [100_000_000, 100_000_000, 1_000_000_000,
                                                   100_000_000, 100_000_000])
    assert all(r.stamp_ns == r.log_ns for r in records)
    ts = bag.typestore()
    header = ts.deserialize_cdr(records[4].image_cdr, bag.IMAGE_TYPE).header  # read in place above
    assert records[4].stamp_ns == header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    assert [r.new_sequence for r in records] == [True, False, False, True, False, False]
    assert {r.sequence for r in records[3:]} == {f"{CITY}_000002_000010"}


def test_message_fields_are_standard(converted):
    _, out, _ = converted
    ts = bag.typestore()
    from rosbags.rosbag2 import Reader

    with Reader(out) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {bag.IMAGE_TOPIC: "sensor_msgs/msg/Image",
                         bag.CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
                         bag.GROUND_TRUTH_TOPIC: "sensor_msgs/msg/Image",
                         bag.SEQUENCE_TOPIC: "std_msgs/msg/String"}
        for conn, _, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == bag.IMAGE_TOPIC:
                assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", W * 3, "camera")
            elif conn.topic == bag.GROUND_TRUTH_TOPIC:
                assert (msg.encoding, msg.step) == ("mono8", W)
            elif conn.topic == bag.CAMERA_INFO_TOPIC:
                assert (msg.height, msg.width, msg.distortion_model) == (H, W, "plumb_bob")
                assert msg.k[0] > 0 and msg.k[8] == 1.0


def test_mcap_ros2_reads_back_equal_values(converted):
    source, out, _ = converted
    from mcap_ros2.reader import read_ros2_messages

    (mcap_file,) = out.glob("*.mcap")
    names, images, labels = [], {}, {}
    for m in read_ros2_messages(str(mcap_file)):
        stamp = m.log_time_ns
        if m.channel.topic == bag.SEQUENCE_TOPIC:
            names.append((stamp, m.ros_msg.data))
        elif m.channel.topic == bag.IMAGE_TOPIC:
            assert m.ros_msg.encoding == "rgb8"
            images[stamp] = np.frombuffer(bytes(m.ros_msg.data), np.uint8).reshape(H, W, 3)
        elif m.channel.topic == bag.GROUND_TRUTH_TOPIC:
            labels[stamp] = np.frombuffer(bytes(m.ros_msg.data), np.uint8).reshape(H, W)
    assert [n for _, n in names] == list(source)
    for stamp, name in names:
        image, gt = source[name]
        np.testing.assert_array_equal(images[stamp], image)
        if gt is None:
            assert stamp not in labels
        else:
            np.testing.assert_array_equal(labels[stamp], gt)


def test_metadata_has_what_jazzy_rosbag2_parses(converted):
    """ROS 2 Jazzy's metadata parser (rosbag2_storage yaml.hpp, version >= 9) needs these keys:
    QoS profiles as a YAML list, custom_data as a map (null is rejected), ros_distro."""
    _, out, _ = converted
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9
    assert meta["storage_identifier"] == "mcap"
    assert isinstance(meta["custom_data"], dict) and meta["custom_data"]
    assert isinstance(meta["ros_distro"], str)
    for key in ("duration", "starting_time", "message_count", "relative_file_paths", "files",
                "compression_format", "compression_mode"):
        assert key in meta
    for topic in meta["topics_with_message_count"]:
        assert isinstance(topic["topic_metadata"]["offered_qos_profiles"], list)
        assert topic["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts[bag.IMAGE_TOPIC] == 6 and counts[bag.GROUND_TRUTH_TOPIC] == 4


def test_cli_convert_and_errors(tmp_path, capsys):
    from mpvss_ros.cli import main

    _make_folder(tmp_path, split="train")
    out = tmp_path / "cli_bag"
    run = subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "bag", "convert", str(tmp_path),
                          "--split", "train", "--out", str(out), "--rate", "5"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "6 frames" in run.stdout
    info = bag.bag_info(out)
    assert (info.frames, info.ground_truth_frames) == (6, 4)
    # Existing output, missing split, bad rate: one-line errors, non-zero exit.
    for argv in (["--split", "train", "--out", str(out)],
                 ["--split", "nosuchsplit", "--out", str(tmp_path / "b2")],
                 ["--split", "train", "--out", str(tmp_path / "b3"), "--rate", "0"]):
        status = main(["bag", "convert", str(tmp_path), *argv, "--quiet"])
        err = capsys.readouterr().err
        assert status == 2, argv
        assert err.count("\n") == 1 and "error" in err, err


def test_failed_conversion_leaves_no_partial_bag(tmp_path):
    good = np.zeros((H, W, 3), np.uint8)
    frames = [bag.BagFrame("c_000001_000000", good, None),
              bag.BagFrame("c_000001_000001", good, np.zeros((H + 1, W), np.uint8))]
    with pytest.raises(ValueError, match="ground truth"):
        bag.write_bag(frames, tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()


def test_camera_bag_with_other_topics_reads_and_rejects_wrong_types(tmp_path):
    """A bag as a camera driver records it: bgr8 on its own topic, no names, no ground truth."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = bag.typestore()
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with Writer(tmp_path / "cam", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/color/image_raw", bag.IMAGE_TYPE, typestore=ts)
        info = writer.add_connection("/cam/color/camera_info", bag.CAMERA_INFO_TYPE, typestore=ts)
        jpeg = writer.add_connection("/cam/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                                     typestore=ts)
        for i in range(3):
            ns = 5_000_000_000 + i * 33_000_000
            writer.write(info, ns, ts.serialize_cdr(bag.camera_info_message(ts, ns, H, W), bag.CAMERA_INFO_TYPE))
            msg = bag.image_message(ts, ns + 1000, rgb[:, :, ::-1], "bgr8")  # header stamp != log time
            writer.write(image, ns + 2_000_000, ts.serialize_cdr(msg, bag.IMAGE_TYPE))
            header = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=5, nanosec=0),
                                                     frame_id="camera")
            writer.write(jpeg, ns, ts.serialize_cdr(ts.types["sensor_msgs/msg/CompressedImage"](
                header=header, format="jpeg", data=np.zeros(4, np.uint8)), "sensor_msgs/msg/CompressedImage"))
    records = list(bag.read_records(tmp_path / "cam", "/cam/color/image_raw"))
    assert len(records) == 3 and [r.new_sequence for r in records] == [True, False, False]
    assert all(r.name is None and r.label_ids is None and r.camera_info_cdr is not None for r in records)
    assert records[1].stamp_ns == 5_000_000_000 + 33_000_000 + 1000  # from the header, not the log
    np.testing.assert_array_equal(records[2].image(), rgb)
    assert bag.bag_info(tmp_path / "cam", "/cam/color/image_raw").ground_truth_frames == 0
    with pytest.raises(ValueError, match="not a JPEG or PNG"):  # a CompressedImage topic reads; bad data is refused
        next(bag.read_records(tmp_path / "cam", "/cam/color/image_raw/compressed")).image()
    with pytest.raises(ValueError, match="is sensor_msgs/msg/CameraInfo, not sensor_msgs/msg/Image"):
        bag.bag_info(tmp_path / "cam", "/cam/color/camera_info")
    with pytest.raises(ValueError, match="has no /camera/image_raw topic"):
        next(bag.read_records(tmp_path / "cam"))


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_compressed_bag_reads_back_as_compressed_image_transport_writes_it(tmp_path, image_format):
    """--image-format png / jpeg: CompressedImages on /camera/image_raw/compressed with the format
    field compressed_image_transport writes; read back (topic found without being named) equal
    to the source for PNG, within JPEG's loss for JPEG; camera_info still attached."""
    from rosbags.rosbag2 import Reader

    source = _make_folder(tmp_path)
    out = tmp_path / "bag"
    summary = bag.convert_sequences(tmp_path, "val", out, rate_hz=10.0, progress=False, image_format=image_format)
    assert summary.frames == 6
    info = bag.bag_info(out)
    assert (info.image_topic, info.image_type, info.compressed) == (
        "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage", True)
    ts = bag.typestore()
    with Reader(out) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert bag.IMAGE_TOPIC not in types and types[bag.GROUND_TRUTH_TOPIC] == bag.IMAGE_TYPE
        for conn, _, raw in reader.messages():
            if conn.msgtype == bag.COMPRESSED_TYPE:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                assert msg.format == f"rgb8; {image_format} compressed bgr8"
                assert bytes(msg.data[:4]) == (b"\x89PNG" if image_format == "png" else b"\xff\xd8\xff\xe0")
    records = list(bag.read_records(out))
    assert [r.name for r in records] == list(source)
    assert all(r.compressed and r.camera_info_cdr is not None for r in records)
    for r in records:
        image, labels = source[r.name]
        got = r.image()
        assert got.shape == image.shape and got.dtype == np.uint8
        if image_format == "png":
            np.testing.assert_array_equal(got, image)
        else:  # random pixels are JPEG's worst case: only the shape of the path is checked here
            assert np.corrcoef(got.reshape(-1), image.reshape(-1))[0, 1] > 0.5
        if labels is not None:
            np.testing.assert_array_equal(r.label_ids, labels)


def test_compressed_records_that_are_not_jpeg_or_png_are_refused(tmp_path):
    """A CompressedImage bag whose data is another format (or garbage): one-line ValueError on
    decoding, as the node refuses it, rather than whatever OpenCV makes of it."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = bag.typestore()
    import cv2

    ok, webp = cv2.imencode(".webp", np.zeros((H, W, 3), np.uint8))
    assert ok
    with Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image/compressed", bag.COMPRESSED_TYPE, typestore=ts)
        for i, data in enumerate((webp.reshape(-1), np.zeros(16, np.uint8))):
            ns = 1_000_000_000 + i
            msg = ts.types[bag.COMPRESSED_TYPE](header=bag.header(ts, ns), format="webp", data=data)
            writer.write(conn, ns, ts.serialize_cdr(msg, bag.COMPRESSED_TYPE))
    records = list(bag.read_records(tmp_path / "b", "/cam/image/compressed"))
    assert len(records) == 2 and bag.camera_info_topic("/cam/image/compressed") == "/cam/camera_info"
    for r in records:
        with pytest.raises(ValueError, match="not a JPEG or PNG") as err:
            r.image()
        assert "\n" not in str(err.value)


def test_jpeg_bag_keeps_colours_and_order(tmp_path):
    """JPEG on a smooth image (what it is for): within a few grey levels of the source, and
    red stays red (a BGR/RGB mix-up would swap the channels)."""
    y, x = np.mgrid[0:H, 0:W]
    image = np.stack([200 * x // W, 120 + 0 * x, 250 - 200 * y // H], axis=2).astype(np.uint8)
    bag.write_bag([bag.BagFrame("c_000001_000000", image, None)], tmp_path / "b", progress=False,
                  image_format="jpeg")
    (record,) = bag.read_records(tmp_path / "b")
    got = record.image().astype(int)
    assert np.abs(got - image).mean() < 3 and np.abs(got - image[..., ::-1]).mean() > 30


def _video(path, frames=12, fps=25.0, size=(48, 96)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(frames):
        rgb = np.zeros((*size, 3), np.uint8)
        rgb[..., 0] = 40 + 15 * i  # red ramps up frame by frame; a blue bar on the right
        rgb[:, -16:, 2] = 200
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_file_converts_at_its_own_rate_in_order(tmp_path, capsys):
    from mpvss_ros.cli import main

    video = _video(tmp_path / "front cam.mp4")
    assert main(["bag", "convert", str(video), "--out", str(tmp_path / "v"), "--quiet"]) == 0
    assert "12 frames (0 with ground truth) in 1 sequences, 48x96, 25 Hz" in capsys.readouterr().out
    info = bag.bag_info(tmp_path / "v")
    assert (info.frames, info.ground_truth_frames) == (12, 0)
    assert info.duration_s == pytest.approx(11 / 25, abs=1e-3)
    records = list(bag.read_records(tmp_path / "v"))
    assert [r.name for r in records] == [f"frontcam_000000_{i:06d}" for i in range(12)]
    assert [r.new_sequence for r in records] == [True] + [False] * 11
    for i, record in enumerate(records):
        image = record.image()
        assert image.shape == (48, 96, 3)
        assert abs(float(image[:, :60, 0].mean()) - (40 + 15 * i)) < 6  # RGB order, frame order (lossy codec)
        assert image[:, -10:, 2].mean() > 180 and image[:, :60, 2].mean() < 20
    assert main(["bag", "convert", str(video), "--out", str(tmp_path / "v5"), "--max-frames", "5",
                 "--rate", "10", "--quiet"]) == 0
    info = bag.bag_info(tmp_path / "v5")
    assert info.frames == 5 and info.duration_s == pytest.approx(0.4, abs=1e-3)


def test_not_a_video_is_a_one_line_error(tmp_path, capsys):
    from mpvss_ros.cli import main

    (tmp_path / "notes.mp4").write_text("not a video")
    for argv in ([str(tmp_path / "notes.mp4"), "--out", str(tmp_path / "b")],
                 [str(tmp_path), "--out", str(tmp_path / "b2")],  # a folder needs --split
                 [str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "b3")]):
        assert main(["bag", "convert", *argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("missing,reason", [
    ("rclpy", "needs ROS 2 and rclpy is not importable here"),
    ("mpvss_ros.msg", "needs the package's ROS 2 messages (mpvss_ros.msg)")])
@pytest.mark.parametrize("argv", [["node"], ["demo", "--out", "DEMO"], ["bag", "evaluate", "BAG", "--out", "R/r.json"],
                                  ["bench", "--model", "models/default", "--out", "R/b.json"]])
def test_ros_commands_without_ros_say_so_in_one_line(tmp_path, argv, missing, reason):
    """Where rclpy is not installed (pip install without ROS), or the messages are not (a wheel
    without the colcon build), the ROS parts refuse in one line before doing any work; the rest
    of mpvss does not need them."""
    _make_folder(tmp_path, split="val")
    bag.convert_sequences(tmp_path, "val", tmp_path / "b", progress=False)
    argv = [a.replace("BAG", str(tmp_path / "b")).replace("DEMO", str(tmp_path / "demo"))
            .replace("R/", str(tmp_path / "r") + "/") for a in argv]
    code = (f"import sys; sys.modules[{missing!r}] = None\n"  # as if not installed
            "from mpvss_ros.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and reason in lines[0], run.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
