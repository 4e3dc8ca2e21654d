"""The small interface between the deploy loop and ROS, with its two implementations.

Messages are dicts in rosbridge's JSON form (real_robot/messages.py). Only topics on the robot's
allow-list can ever be advertised or published, and every published message is checked against
its ROS type first.

- RospyTransport: native ROS 1 through rospy (Debian's python3-rospy; see import_rospy).
- RosbridgeTransport: rosbridge v2 over a websocket through roslibpy 2.1.0, for arms whose ROS
  PC runs rosbridge_server. roslibpy drops the server's `status` frames (so publish errors would be
  invisible) and its reactor cannot be restarted after terminate(): this class installs its own
  status handler and only ever closes the connection; one deploy per process.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import xmlrpc.client
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable

from robo_rl.real_robot import messages

LOG = logging.getLogger("robo_rl.deploy")
SYSTEM_DIST_PACKAGES = ("/usr/lib/python3/dist-packages",)
Callback = Callable[[dict], None]


class TransportError(RuntimeError):
    """ROS cannot be reached or refused something; the text says what and where."""


class Transport(ABC):
    name = "transport"

    def __init__(self, allowed_publish: Iterable[str]) -> None:
        self.allowed_publish = frozenset(allowed_publish)
        self._types: dict[str, str] = {}
        self.errors: list[str] = []   # error reports from the other side (rosbridge status frames)

    @abstractmethod
    def connect(self, timeout: float) -> None: ...

    @abstractmethod
    def subscribe(self, topic: str, ros_type: str, callback: Callback, queue_size: int = 1) -> None:
        """Call `callback` with each message; at most `queue_size` wait while it runs (older ones drop)."""

    @abstractmethod
    def _advertise(self, topic: str, ros_type: str) -> None: ...

    @abstractmethod
    def _publish(self, topic: str, msg: dict) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def other_publishers(self, topic: str) -> list[str] | None:
        """The other live nodes publishing on `topic` (None: this transport cannot tell)."""
        return None

    def advertise(self, topic: str, ros_type: str) -> None:
        if topic not in self.allowed_publish:
            raise TransportError(f"topic '{topic}' is not in the robot's allowed_publish list {sorted(self.allowed_publish)}")
        self._types[topic] = ros_type
        self._advertise(topic, ros_type)

    def publish(self, topic: str, msg: dict) -> None:
        if topic not in self.allowed_publish:
            raise TransportError(f"topic '{topic}' is not in the robot's allowed_publish list {sorted(self.allowed_publish)}")
        if topic not in self._types:
            raise TransportError(f"topic '{topic}' was not advertised")
        messages.validate(self._types[topic], msg)
        self._publish(topic, msg)


def import_rospy() -> Any:
    """rospy from the system's ROS 1 packages (a venv does not see them by default)."""
    try:
        import rospy
    except ImportError:
        for folder in SYSTEM_DIST_PACKAGES:
            if Path(folder).is_dir() and folder not in sys.path:
                sys.path.append(folder)
        try:
            import rospy
        except ImportError:
            raise TransportError("rospy is not installed (Debian: apt-get install ros-core python3-rospy "
                                 "python3-sensor-msgs python3-trajectory-msgs python3-std-msgs)") from None
    return rospy


class RospyTransport(Transport):
    name = "rospy"

    def __init__(self, allowed_publish: Iterable[str], node_name: str = "robo_rl_deploy") -> None:
        super().__init__(allowed_publish)
        self.node_name = node_name
        self._publishers: dict[str, Any] = {}
        self._subscribers: list[Any] = []

    def connect(self, timeout: float) -> None:
        rospy = import_rospy()
        import rosgraph

        deadline = time.monotonic() + timeout
        while not rosgraph.is_master_online():
            if time.monotonic() > deadline:
                raise TransportError(f"no ROS master at {rosgraph.get_master_uri()} (is roscore running?)")
            time.sleep(0.1)
        rospy.init_node(self.node_name, anonymous=True, disable_signals=True)
        self._rospy = rospy

    def subscribe(self, topic: str, ros_type: str, callback: Callback, queue_size: int = 1) -> None:
        cls = messages.ros_class(ros_type)
        self._subscribers.append(self._rospy.Subscriber(
            topic, cls, lambda msg: callback(messages.from_ros(msg)), queue_size=queue_size, tcp_nodelay=True))

    def _advertise(self, topic: str, ros_type: str) -> None:
        self._publishers[topic] = self._rospy.Publisher(topic, messages.ros_class(ros_type), queue_size=1, tcp_nodelay=True)

    def _publish(self, topic: str, msg: dict) -> None:
        pub = self._publishers[topic]
        pub.publish(messages.to_ros(pub.data_class, msg))

    def wait_for_subscribers(self, topic: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._publishers[topic].get_num_connections() == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def other_publishers(self, topic: str) -> list[str] | None:
        """Publishers the ROS master lists for `topic`, less this node and nodes that no longer answer
        (a node killed outright stays registered until its name is reused)."""
        import rosgraph

        me = self._rospy.get_name()
        master = rosgraph.Master(me)
        publishers, _, _ = master.getSystemState()
        nodes = next((names for name, names in publishers if name == topic), [])
        mine = self._rospy.get_node_uri()
        return [node for node in nodes if node != me and _node_publishes(master, me, node, topic, mine)]

    def close(self) -> None:
        for sub in self._subscribers:
            sub.unregister()
        for pub in self._publishers.values():
            pub.unregister()
        self._subscribers, self._publishers = [], {}
        if hasattr(self, "_rospy"):
            self._rospy.signal_shutdown("deploy finished")


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> Any:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


def _node_publishes(master: Any, caller: str, node: str, topic: str, mine: str | None = None, timeout: float = 1.0) -> bool:
    """Whether `node` answers its XML-RPC API within `timeout` seconds and says it publishes `topic`. Asking
    for its publications, not just an answer, matters: a node killed outright stays registered, and its port
    can be taken by a later node (this one too, `mine`), which would answer in its name."""
    try:
        uri = master.lookupNode(node)
        if mine is not None and uri.rstrip("/") == mine.rstrip("/"):
            return False
        code, _, publications = xmlrpc.client.ServerProxy(uri, transport=_TimeoutTransport(timeout)).getPublications(caller)
        return code == 1 and any(name == topic for name, _ in publications)
    except Exception:   # unknown to the master, refused, timed out: not a live publisher
        return False


class RosbridgeTransport(Transport):
    name = "rosbridge"

    def __init__(self, allowed_publish: Iterable[str], host: str = "127.0.0.1", port: int = 9090) -> None:
        super().__init__(allowed_publish)
        self.host, self.port = host, int(port)
        self._topics: dict[str, Any] = {}
        self._subscriptions: list[Any] = []
        self._lock = threading.Lock()

    def _on_status(self, message: Any) -> None:
        text = f"rosbridge {message.get('level', 'error')}: {message.get('msg', '')} (id {message.get('id')})"
        LOG.warning(text)
        if message.get("level", "error") == "error":
            with self._lock:
                self.errors.append(text)

    def connect(self, timeout: float) -> None:
        import roslibpy

        self._roslibpy = roslibpy
        self.ros = roslibpy.Ros(host=self.host, port=self.port)
        # roslibpy 2.1.0 maps op "status" to no handler; install ours on every (re)connection.
        self.ros.factory.on_ready(lambda proto: proto._message_handlers.__setitem__("status", self._on_status))
        try:
            self.ros.run(timeout=timeout)
        except Exception:
            raise TransportError(f"cannot reach rosbridge at ws://{self.host}:{self.port} within {timeout:.0f} s") from None
        self.ros.send_on_ready(roslibpy.Message({"op": "set_level", "level": "warning"}))

    def subscribe(self, topic: str, ros_type: str, callback: Callback, queue_size: int = 1) -> None:
        sub = self._roslibpy.Topic(self.ros, topic, ros_type, queue_length=queue_size)
        sub.subscribe(lambda msg: callback(dict(msg)))
        self._subscriptions.append(sub)

    def _advertise(self, topic: str, ros_type: str) -> None:
        pub = self._roslibpy.Topic(self.ros, topic, ros_type, queue_size=1)
        pub.advertise()
        self._topics[topic] = pub

    def _publish(self, topic: str, msg: dict) -> None:
        self._topics[topic].publish(self._roslibpy.Message(msg))

    def close(self) -> None:
        if not hasattr(self, "ros"):
            return
        try:
            for sub in self._subscriptions:
                sub.unsubscribe()
            for pub in self._topics.values():
                pub.unadvertise()
            time.sleep(0.05)   # let the reactor send the last frames before the socket closes
            self.ros.close(timeout=2.0)
        except Exception as exc:   # closing a dead connection is not an error worth a traceback
            LOG.info("rosbridge close: %s", exc)
        self._subscriptions, self._topics = [], {}


def make_transport(kind: str, robot: Any) -> Transport:
    if kind == "rospy":
        return RospyTransport(robot.allowed_publish)
    if kind == "rosbridge":
        return RosbridgeTransport(robot.allowed_publish, robot.rosbridge_host, robot.rosbridge_port)
    from robo_rl.config import ConfigError

    raise ConfigError(f"config key 'transport' must be rospy or rosbridge, got '{kind}'")
