#!/usr/bin/python3
"""A provider for virtual-kubelet in Python, over the provider protocol.

It serves the pod lifecycle, status notifications, ping, logs, exec (echo, cat, env, true,
false, sh -c 'exit N') and port-forward (every port echoes), with Debian's python3-grpcio and
python3-protobuf and no generated code: the protocol's messages come from a FileDescriptorSet
of provider.proto (VK_PROVIDER_DESCRIPTOR_SET, written by scripts/build-example-providers.ts)
and the service is registered with grpc's generic handlers.

It listens where VK_PROVIDER_ADDRESS says (unix:///path.sock).
"""
import json
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "virtualkubelet.provider.v1alpha1"
VERSION = "v1alpha1"
CAPABILITIES = ["podNotifier", "nodeProvider", "logs", "exec", "portForward"]


def load_messages(path):
    with open(path, "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    factory = message_factory.MessageFactory(pool)
    service = pool.FindServiceByName(PACKAGE + ".Provider")

    def cls(name):
        return factory.GetPrototype(pool.FindMessageTypeByName(PACKAGE + "." + name))

    return cls, service


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Pods:
    """Pods in memory: Running at once, a log line when each container starts."""

    def __init__(self, host_ip):
        self.lock = threading.Lock()
        self.pods = {}
        self.logs = {}
        self.watchers = set()
        self.host_ip = host_ip
        self.next_ip = 0

    def _emit(self, pod):
        data = json.dumps(pod).encode()
        for w in list(self.watchers):
            w.put(data)

    def create(self, pod, context):
        meta = pod.get("metadata") or {}
        ns, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid", "")
        if not ns or not name or not pod.get("spec"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the pod has no namespace, name or spec")
        key = ns + "/" + name
        with self.lock:
            old = self.pods.get(key)
            if old is not None and old["metadata"].get("uid", "") == uid:
                return  # idempotent per UID
            self.next_ip += 1
            ip = "10.245.%d.%d" % (self.next_ip // 250, self.next_ip % 250 + 2)
            t = now()
            containers = pod["spec"].get("containers", [])
            status = {
                "phase": "Running",
                "conditions": [
                    {"type": c, "status": "True", "lastTransitionTime": t}
                    for c in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "hostIP": self.host_ip,
                "hostIPs": [{"ip": self.host_ip}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": t,
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "containerID": "python-mock://%s/%s" % (uid, c["name"]),
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": t}},
                    }
                    for c in containers
                ],
            }
            qos = (pod.get("status") or {}).get("qosClass")
            if qos:
                status["qosClass"] = qos
            stored = dict(pod)
            stored["status"] = status
            self.pods[key] = stored
            for c in containers:
                self.logs[key + "/" + c["name"]] = [
                    "python-mock: container %s of %s started" % (c["name"], key)
                ]
            self._emit(stored)

    def update(self, pod, context):
        meta = pod.get("metadata") or {}
        key = "%s/%s" % (meta.get("namespace"), meta.get("name"))
        with self.lock:
            old = self.pods.get(key)
            if old is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "pod %s is not known" % key)
            stored = dict(pod)
            stored["status"] = old["status"]
            self.pods[key] = stored

    def delete(self, pod, context):
        meta = pod.get("metadata") or {}
        key = "%s/%s" % (meta.get("namespace"), meta.get("name"))
        with self.lock:
            old = self.pods.pop(key, None)
            if old is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "pod %s is not known" % key)
            t = now()
            for cs in old["status"]["containerStatuses"]:
                started = cs["state"].get("running", {}).get("startedAt", t)
                cs["state"] = {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": t}
                }
                cs["ready"] = False
                cs["started"] = False
            for c in old["status"]["conditions"]:
                if c["type"] in ("Ready", "ContainersReady"):
                    c["status"] = "False"
            old["status"]["phase"] = "Succeeded"
            for k in [k for k in self.logs if k.startswith(key + "/")]:
                del self.logs[k]
            self._emit(old)

    def get(self, ns, name):
        with self.lock:
            pod = self.pods.get(ns + "/" + name)
            return json.loads(json.dumps(pod)) if pod else None

    def all(self):
        with self.lock:
            return [json.dumps(p).encode() for p in self.pods.values()]


def serve(address, descriptor_set):
    cls, service = load_messages(descriptor_set)
    pods = Pods(os.environ.get("VK_PROVIDER_HOST_IP", "127.0.0.1"))

    def unary(name, fn):
        method = service.FindMethodByName(name)
        request = cls(method.input_type.name)
        response = cls(method.output_type.name)
        return grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: fn(req, ctx, response),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    def streaming(name, fn, client_stream):
        method = service.FindMethodByName(name)
        request = cls(method.input_type.name)
        response = cls(method.output_type.name)
        make = grpc.stream_stream_rpc_method_handler if client_stream else grpc.unary_stream_rpc_method_handler
        return make(
            lambda req, ctx: fn(req, ctx, response),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    def handshake(req, ctx, Res):
        if VERSION not in req.versions:
            ctx.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the agent offers %s; python-mock speaks %s" % (list(req.versions), VERSION),
            )
        return Res(version=VERSION, capabilities=CAPABILITIES, provider_name="python-mock")

    def pod_of(req, ctx):
        try:
            return json.loads(req.pod_json)
        except ValueError as e:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "pod_json is not JSON: %s" % e)

    def lifecycle(action):
        def fn(req, ctx, Res):
            getattr(pods, action)(pod_of(req, ctx), ctx)
            return Res()

        return fn

    def get_pod(req, ctx, Res):
        pod = pods.get(req.namespace, req.name)
        return Res(found=True, pod_json=json.dumps(pod).encode()) if pod else Res()

    def get_status(req, ctx, Res):
        pod = pods.get(req.namespace, req.name)
        return Res(found=True, status_json=json.dumps(pod["status"]).encode()) if pod else Res()

    def watch_pods(req, ctx, Res):
        q = queue.Queue()
        with pods.lock:
            pods.watchers.add(q)
        ctx.send_initial_metadata(())
        try:
            while ctx.is_active():
                try:
                    data = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                yield Res(pod_json=data)
        finally:
            with pods.lock:
                pods.watchers.discard(q)

    def logs(req, ctx, Res):
        key = "%s/%s/%s" % (req.namespace, req.pod, req.container)
        with pods.lock:
            lines = list(pods.logs.get(key, [])) if key in pods.logs else None
        if lines is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "container %s not found" % key)
        if req.HasField("tail_lines"):
            lines = lines[len(lines) - req.tail_lines :] if req.tail_lines else []
        ctx.send_initial_metadata(())
        for line in lines:
            yield Res(data=(line + "\n").encode())

    def exec_(requests, ctx, Res):
        first = next(requests)
        if first.WhichOneof("kind") != "start":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be start")
        start = first.start
        pod = pods.get(start.namespace, start.pod)
        if pod is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, 'pod "%s" does not exist' % start.pod)
        argv = list(start.command)
        env = []
        for c in pod["spec"].get("containers", []):
            if c["name"] == start.container:
                env = ["%s=%s" % (e["name"], e.get("value", "")) for e in c.get("env", [])]
        code = 0
        if argv[:1] == ["echo"]:
            yield Res(stdout=(" ".join(argv[1:]) + "\n").encode())
        elif argv == ["env"]:
            yield Res(stdout="".join(e + "\n" for e in env).encode())
        elif argv == ["cat"]:
            for m in requests:
                kind = m.WhichOneof("kind")
                if kind == "stdin":
                    yield Res(stdout=m.stdin)
                elif kind == "stdin_close":
                    break
        elif argv == ["true"]:
            pass
        elif argv == ["false"]:
            code = 1
        elif len(argv) == 3 and argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            code = int(argv[2].split()[1]) & 0xFF
        else:
            yield Res(stderr=("python-mock: %s: command not found\n" % argv[0]).encode())
            code = 127
        exit_message = Res()
        exit_message.exit.code = code
        yield exit_message

    def port_forward(requests, ctx, Res):
        first = next(requests)
        if first.WhichOneof("kind") != "start":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be start")
        if pods.get(first.start.namespace, first.start.pod) is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, 'pod "%s" does not exist' % first.start.pod)
        for m in requests:
            kind = m.WhichOneof("kind")
            if kind == "data":
                yield Res(data=m.data)
            elif kind == "close_write":
                return

    handlers = {
        "Handshake": unary("Handshake", handshake),
        "CreatePod": unary("CreatePod", lifecycle("create")),
        "UpdatePod": unary("UpdatePod", lifecycle("update")),
        "DeletePod": unary("DeletePod", lifecycle("delete")),
        "GetPod": unary("GetPod", get_pod),
        "GetPodStatus": unary("GetPodStatus", get_status),
        "ListPods": unary("ListPods", lambda req, ctx, Res: Res(pods_json=pods.all())),
        "Ping": unary("Ping", lambda req, ctx, Res: Res()),
        "WatchPods": streaming("WatchPods", watch_pods, False),
        "GetContainerLogs": streaming("GetContainerLogs", logs, False),
        "Exec": streaming("Exec", exec_, True),
        "PortForward": streaming("PortForward", port_forward, True),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    path = address[len("unix://") :] if address.startswith("unix://") else None
    if path and os.path.exists(path):
        os.remove(path)
    if server.add_insecure_port(address) == 0 and not path:
        sys.exit("python-mock: cannot listen on %s" % address)
    server.start()
    print("python-mock: serving protocol %s on %s" % (VERSION, address), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop(grace=1).wait()
    if path and os.path.exists(path):
        os.remove(path)


if __name__ == "__main__":
    address = os.environ.get("VK_PROVIDER_ADDRESS")
    descriptor_set = os.environ.get("VK_PROVIDER_DESCRIPTOR_SET")
    if not address or not descriptor_set:
        sys.exit("python-mock: set VK_PROVIDER_ADDRESS and VK_PROVIDER_DESCRIPTOR_SET")
    serve(address, descriptor_set)
