"""A rosbridge v2 server for tests, written from the protocol text, relaying to a real roscore.

No rosbridge_server can be installed here, so tests (and `robo-rl bench ros`) run the real client,
roslibpy, against this peer: JSON ops over a websocket (asyncio `websockets`), each `publish`
checked field by field against the ROS 1 type definitions of `rosbags` (a bad message gets a
`status` error frame, as rosbridge sends), topics relayed through rospy to the roscore at
ROS_MASTER_URI. Implemented ops: advertise, unadvertise, publish, subscribe (throttle_rate,
queue_length), unsubscribe, set_level, and status replies; call_service answers result false.

  python tests/rosbridge_peer.py --port 9090 [--record frames.jsonl]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from robo_rl.real_robot import messages
from robo_rl.real_robot.transport import import_rospy

LEVELS = {"none": 0, "error": 1, "warning": 2, "info": 3}


class Peer:
    def __init__(self, rospy: Any, record: str | None) -> None:
        self.rospy = rospy
        self.publishers: dict[str, tuple[str, Any]] = {}
        self.record = open(record, "a") if record else None

    async def serve(self, websocket: Any) -> None:
        client = Client(self, websocket, asyncio.get_running_loop())
        try:
            async for frame in websocket:
                await client.handle(frame)
        except Exception:   # a client that drops the connection ends its own exchange, nothing more
            pass
        finally:
            client.close()


class Client:
    def __init__(self, peer: Peer, websocket: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.peer, self.ws, self.loop = peer, websocket, loop
        self.level = LEVELS["error"]
        self.subscribers: dict[str, Any] = {}

    async def status(self, level: str, text: str, op_id: str | None) -> None:
        if LEVELS[level] <= self.level:
            frame = {"op": "status", "level": level, "msg": text}
            if op_id is not None:
                frame["id"] = op_id
            await self.ws.send(json.dumps(frame))

    async def handle(self, frame: str | bytes) -> None:
        try:
            message = json.loads(frame)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            await self.status("error", f"frame is not a rosbridge JSON object with an 'op': {str(frame)[:80]}", None)
            return
        if self.peer.record:
            self.peer.record.write(json.dumps(message) + "\n")
            self.peer.record.flush()
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            await self.status("error", f"unknown op '{op}'", message.get("id"))
            return
        try:
            await handler(message)
        except messages.MessageError as exc:
            await self.status("error", f"{op}: {exc}", message.get("id"))
        except KeyError as exc:
            await self.status("error", f"{op}: missing field {exc}", message.get("id"))

    async def op_set_level(self, message: dict) -> None:
        self.level = LEVELS.get(message.get("level", "error"), LEVELS["error"])

    async def op_advertise(self, message: dict) -> None:
        topic, ros_type = message["topic"], message["type"]
        if not messages.known_type(ros_type):
            raise messages.MessageError(f"cannot resolve type '{ros_type}'")
        known = self.peer.publishers.get(topic)
        if known and known[0] != ros_type:
            raise messages.MessageError(f"topic {topic} already has type {known[0]}, not {ros_type}")
        if not known:
            cls = messages.ros_class(ros_type)
            self.peer.publishers[topic] = (ros_type, self.peer.rospy.Publisher(topic, cls, queue_size=1, tcp_nodelay=True))

    async def op_unadvertise(self, message: dict) -> None:
        self.peer.publishers.get(message["topic"], (None, None))  # publishers are shared; kept for other clients

    async def op_publish(self, message: dict) -> None:
        topic, msg = message["topic"], message["msg"]
        if topic not in self.peer.publishers:
            raise messages.MessageError(f"topic {topic} has not been advertised")
        ros_type, publisher = self.peer.publishers[topic]
        messages.validate(ros_type, msg)
        publisher.publish(messages.to_ros(publisher.data_class, msg))

    async def op_subscribe(self, message: dict) -> None:
        topic, ros_type = message["topic"], message.get("type")
        if topic in self.subscribers:
            return
        if not ros_type or not messages.known_type(ros_type):
            raise messages.MessageError(f"cannot resolve type '{ros_type}' for {topic}")
        throttle = float(message.get("throttle_rate", 0)) / 1000.0
        last = [0.0]

        def forward(ros_msg: Any) -> None:   # rospy's thread -> the client's event loop
            now = time.monotonic()
            if throttle and now - last[0] < throttle:
                return
            last[0] = now
            frame = json.dumps({"op": "publish", "topic": topic, "msg": messages.from_ros(ros_msg)})
            asyncio.run_coroutine_threadsafe(self._send(frame), self.loop)

        queue = int(message.get("queue_length", 0)) or 1
        self.subscribers[topic] = self.peer.rospy.Subscriber(topic, messages.ros_class(ros_type), forward,
                                                             queue_size=queue, tcp_nodelay=True)

    async def _send(self, frame: str) -> None:
        try:
            await self.ws.send(frame)
        except Exception:
            pass

    async def op_unsubscribe(self, message: dict) -> None:
        sub = self.subscribers.pop(message["topic"], None)
        if sub is not None:
            sub.unregister()

    async def op_call_service(self, message: dict) -> None:
        await self.ws.send(json.dumps({"op": "service_response", "id": message.get("id"), "service": message["service"],
                                       "values": {}, "result": False}))

    def close(self) -> None:
        for sub in self.subscribers.values():
            sub.unregister()
        self.subscribers.clear()


async def serve(port: int, record: str | None) -> None:
    import websockets

    rospy = import_rospy()
    rospy.init_node("rosbridge_peer", anonymous=True, disable_signals=True)
    peer = Peer(rospy, record)
    async with websockets.serve(peer.serve, "127.0.0.1", port, max_size=10 * 2**20):
        print(f"rosbridge_peer: ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rosbridge_peer")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--record", default=None, help="append every client frame to this JSONL file")
    opts = parser.parse_args(argv)
    try:
        asyncio.run(serve(opts.port, opts.record))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
