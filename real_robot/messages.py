"""ROS messages as plain dicts (rosbridge's JSON form), checked against the ROS 1 type definitions.

Every transport speaks these dicts: the rosbridge transport sends them as they are, the rospy
transport converts them to and from genpy messages. The field lists come from `rosbags`' ROS 1
(Noetic) type store, so a message is validated the same way with or without ROS installed.
"""
from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any, Mapping, Sequence

JOINT_STATE = "sensor_msgs/JointState"
JOINT_TRAJECTORY = "trajectory_msgs/JointTrajectory"
FLOAT64_ARRAY = "std_msgs/Float64MultiArray"
BOOL = "std_msgs/Bool"

_INTS = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "byte", "char"}
_FLOATS = {"float32", "float64"}


class MessageError(ValueError):
    """A message that does not fit its ROS type; the text names the field."""


@lru_cache(maxsize=1)
def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC)


def _full_name(ros_type: str) -> str:
    pkg, _, name = ros_type.replace("/msg/", "/").partition("/")
    return f"{pkg}/msg/{name}"


def known_type(ros_type: str) -> bool:
    return _full_name(ros_type) in _typestore().fielddefs


def field_defs(ros_type: str) -> list[tuple[str, Any]]:
    try:
        return list(_typestore().fielddefs[_full_name(ros_type)][1])
    except KeyError:
        raise MessageError(f"unknown message type '{ros_type}'") from None


def _is_time(type_name: str) -> bool:
    return type_name in ("builtin_interfaces/msg/Time", "builtin_interfaces/msg/Duration")


def validate(ros_type: str, msg: Any, path: str = "") -> None:
    """Raise MessageError naming the first field of `msg` that does not fit `ros_type`.

    Missing fields are allowed (ROS fills defaults); unknown fields and wrong value types are not.
    """
    where = path or ros_type
    if not isinstance(msg, Mapping):
        raise MessageError(f"{where}: expected an object, got {type(msg).__name__}")
    fields = dict(field_defs(ros_type))
    for key, value in msg.items():
        if key not in fields:
            raise MessageError(f"{where}: unknown field '{key}' (fields: {', '.join(fields)})")
        _validate_value(fields[key], value, f"{path + '.' if path else ''}{key}")


def _validate_value(desc: tuple, value: Any, path: str) -> None:
    kind, detail = desc
    kind = getattr(kind, "name", kind)
    if kind == "NAME":
        if _is_time(detail):
            if not isinstance(value, Mapping) or not set(value) <= {"secs", "nsecs", "sec", "nanosec"}:
                raise MessageError(f"{path}: expected a time {{secs, nsecs}}, got {value!r}")
            for part in value.values():
                if not isinstance(part, int) or isinstance(part, bool):
                    raise MessageError(f"{path}: time parts must be integers, got {value!r}")
            return
        validate(detail, value, path)
    elif kind == "BASE":
        _validate_base(detail[0], value, path)
    elif kind in ("SEQUENCE", "ARRAY"):
        if not isinstance(value, (list, tuple)):
            raise MessageError(f"{path}: expected a list, got {type(value).__name__}")
        element, length = detail
        if kind == "ARRAY" and length and len(value) != length:
            raise MessageError(f"{path}: expected {length} elements, got {len(value)}")
        for i, item in enumerate(value):
            _validate_value(element, item, f"{path}[{i}]")


def _validate_base(type_name: str, value: Any, path: str) -> None:
    if type_name == "string":
        ok = isinstance(value, str)
    elif type_name == "bool":
        ok = isinstance(value, bool)
    elif type_name in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name in _FLOATS:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = True
    if not ok:
        raise MessageError(f"{path}: expected {type_name}, got {value!r}")


def stamp_now() -> dict[str, int]:
    now = time.time()
    return {"secs": int(now), "nsecs": int((now % 1.0) * 1e9)}


def stamp_seconds(msg: Mapping[str, Any]) -> float | None:
    """A message's header stamp in seconds since the epoch, or None when it has none (missing or zero)."""
    header = msg.get("header") if isinstance(msg, Mapping) else None
    stamp = header.get("stamp") if isinstance(header, Mapping) else None
    if not isinstance(stamp, Mapping):
        return None
    secs, nsecs = stamp.get("secs", stamp.get("sec", 0)), stamp.get("nsecs", stamp.get("nanosec", 0))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (secs, nsecs)) or (secs == 0 and nsecs == 0):
        return None
    return secs + 1e-9 * nsecs


def joint_state(names: Sequence[str], positions: Sequence[float], velocities: Sequence[float]) -> dict[str, Any]:
    return {"header": {"seq": 0, "stamp": stamp_now(), "frame_id": ""}, "name": list(names),
            "position": [float(x) for x in positions], "velocity": [float(x) for x in velocities], "effort": []}


def joint_trajectory(names: Sequence[str], values: Sequence[float], kind: str, period: float) -> dict[str, Any]:
    """One-point trajectory reaching `values` (positions or velocities) one control period from now."""
    nanos = int(round(period * 1e9))
    point = {"positions": [], "velocities": [], "accelerations": [], "effort": [],
             "time_from_start": {"secs": nanos // 1_000_000_000, "nsecs": nanos % 1_000_000_000}}
    point["positions" if kind == "position" else "velocities"] = [float(x) for x in values]
    return {"header": {"seq": 0, "stamp": {"secs": 0, "nsecs": 0}, "frame_id": ""},
            "joint_names": list(names), "points": [point]}


def float64_array(values: Sequence[float]) -> dict[str, Any]:
    return {"layout": {"dim": [], "data_offset": 0}, "data": [float(x) for x in values]}


def command_values(msg: Mapping[str, Any], ros_type: str, names: Sequence[str], kind: str) -> list[float]:
    """The joint values a command message carries, in the order of `names` (used by the sim arm)."""
    if ros_type == FLOAT64_ARRAY:
        values = list(msg.get("data", []))
    else:
        points = msg.get("points") or []
        if not points:
            raise MessageError("points: a trajectory command needs at least one point")
        order = list(msg.get("joint_names") or [])
        if sorted(order) != sorted(names):
            raise MessageError(f"joint_names: expected {list(names)}, got {order}")
        field = "positions" if kind == "position" else "velocities"
        raw = list(points[-1].get(field) or [])
        if len(raw) != len(order):
            raise MessageError(f"points[-1].{field}: expected {len(order)} values, got {len(raw)}")
        values = [raw[order.index(n)] for n in names]
    if len(values) != len(names):
        raise MessageError(f"command: expected {len(names)} values, got {len(values)}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise MessageError(f"command: values must be finite numbers, got {values}")
    return [float(v) for v in values]


# --- genpy conversion (rospy transport and the ROS-side test tools) -------------------------------

def to_ros(msg_class: type, data: Mapping[str, Any]) -> Any:
    """A genpy message of `msg_class` from its dict form (missing fields keep ROS defaults)."""
    import genpy

    msg = msg_class()
    for name, slot_type in zip(msg.__slots__, msg._slot_types):
        if name not in data:
            continue
        value = data[name]
        if slot_type in ("time", "duration"):
            cls = genpy.Time if slot_type == "time" else genpy.Duration
            value = cls(int(value.get("secs", value.get("sec", 0))), int(value.get("nsecs", value.get("nanosec", 0))))
        elif slot_type.endswith("]") and "/" in slot_type:
            element = _msg_class(slot_type[:slot_type.index("[")])
            value = [to_ros(element, item) for item in value]
        elif "/" in slot_type or slot_type == "Header":
            value = to_ros(_msg_class("std_msgs/Header" if slot_type == "Header" else slot_type), value)
        setattr(msg, name, value)
    return msg


def from_ros(msg: Any) -> Any:
    """The dict form of a genpy message (times as {secs, nsecs})."""
    import genpy

    if isinstance(msg, (genpy.Time, genpy.Duration)):
        return {"secs": int(msg.secs), "nsecs": int(msg.nsecs)}
    if hasattr(msg, "__slots__") and hasattr(msg, "_slot_types"):
        return {name: from_ros(getattr(msg, name)) for name in msg.__slots__}
    if isinstance(msg, (list, tuple)):
        return [from_ros(v) for v in msg]
    return msg


def _msg_class(ros_type: str) -> type:
    import importlib

    pkg, _, name = ros_type.partition("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def ros_class(ros_type: str) -> type:
    """The genpy class of a ROS 1 type name such as 'sensor_msgs/JointState'."""
    try:
        return _msg_class(ros_type)
    except (ImportError, AttributeError):
        raise MessageError(f"message type '{ros_type}' is not installed for rospy") from None
