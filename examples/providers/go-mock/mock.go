package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Obj is a Kubernetes object as decoded JSON.
type Obj = map[string]any

// The capabilities this provider serves, by the contract's names.
var capabilities = []string{
	"podNotifier", "nodeProvider", "nodeConfigurer", "logs", "exec", "attach",
	"portForward", "stats", "metricsResource", "events", "podAddresses",
}

// envOr is the environment variable `name`, or `def` when it is not set.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Settings from the environment: the node's capacity and how often containers log a tick line
// (0: never).
var (
	capacityCPU     = envOr("VK_MOCK_CPU", "20")
	capacityMemory  = envOr("VK_MOCK_MEMORY", "100Gi")
	capacityPods    = envOr("VK_MOCK_PODS", "110")
	tickInterval, _ = time.ParseDuration(envOr("VK_MOCK_LOG_INTERVAL_MS", "1000") + "ms")
)

const (
	// Synthetic usage of every running container.
	containerNanoCores = 10_000_000
	containerMemory    = 16 << 20
	nodeMemory         = 100 << 30
)

type logLine struct {
	at   time.Time
	text string
}

// run is one run of a container: its log, until it stops.
type run struct {
	startedAt time.Time
	lines     []logLine
	stopped   bool
	// changed is closed (and replaced) whenever a line is added or the run stops.
	changed chan struct{}
}

type container struct {
	current, previous *run
}

type entry struct {
	pod        Obj
	status     Obj
	uid        string
	containers map[string]*container
	env        map[string][]string // "NAME=value" lines by container
	stop       chan struct{}
}

type podEvent struct {
	pod                   Obj
	kind, reason, message string
}

type mock struct {
	p        *Proto
	mu       sync.Mutex
	pods     map[string]*entry
	ips      map[string]string
	nextIP   int
	podSubs  map[chan []byte]struct{}
	evSubs   map[chan podEvent]struct{}
	nodeName string
	hostIP   string
	started  time.Time
	closed   chan struct{}
}

func newMock(p *Proto) *mock {
	host := os.Getenv("VK_PROVIDER_HOST_IP")
	if host == "" {
		host = "127.0.0.1"
	}
	return &mock{
		p: p, pods: map[string]*entry{}, ips: map[string]string{}, podSubs: map[chan []byte]struct{}{},
		evSubs: map[chan podEvent]struct{}{}, hostIP: host, started: time.Now(), closed: make(chan struct{}),
	}
}

func (m *mock) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
	default:
		close(m.closed)
	}
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func str(o Obj, path ...string) string {
	var cur any = o
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[k]
	}
	s, _ := cur.(string)
	return s
}

func obj(o Obj, key string) Obj {
	if v, ok := o[key].(map[string]any); ok {
		return v
	}
	return Obj{}
}

func list(o Obj, key string) []any {
	v, _ := o[key].([]any)
	return v
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func notFound(format string, args ...any) error {
	return status.Errorf(codes.NotFound, format, args...)
}

func decode(b []byte) (Obj, error) {
	var o Obj
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, invalid("not valid JSON: %v", err)
	}
	return o, nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (r *run) append(text string) {
	r.lines = append(r.lines, logLine{at: time.Now().UTC(), text: text})
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *run) halt() {
	if r.stopped {
		return
	}
	r.stopped = true
	close(r.changed)
	r.changed = make(chan struct{})
}

// view is the pod with its status, as the protocol sends it. Called with m.mu held.
func (e *entry) view() Obj {
	var pod Obj
	_ = json.Unmarshal(encode(e.pod), &pod)
	var st Obj
	_ = json.Unmarshal(encode(e.status), &st)
	pod["status"] = st
	return pod
}

func (m *mock) ipOf(pod Obj, uid string) string {
	if b, _ := obj(pod, "spec")["hostNetwork"].(bool); b {
		return m.hostIP
	}
	if ip, ok := m.ips[uid]; ok {
		return ip
	}
	m.nextIP++
	ip := fmt.Sprintf("10.244.%d.%d", m.nextIP/250, m.nextIP%250+2)
	m.ips[uid] = ip
	return ip
}

func podKey(pod Obj) (string, error) {
	ns, name := str(pod, "metadata", "namespace"), str(pod, "metadata", "name")
	if ns == "" || name == "" {
		return "", invalid("the pod has no metadata.namespace or metadata.name")
	}
	return ns + "/" + name, nil
}

func (m *mock) emit(e *entry) {
	b := encode(e.view())
	for ch := range m.podSubs {
		select {
		case ch <- b:
		default:
			log.Printf("a pod watcher is too slow: an update was dropped")
		}
	}
}

func (m *mock) event(pod Obj, kind, reason, message string) {
	for ch := range m.evSubs {
		select {
		case ch <- podEvent{pod: pod, kind: kind, reason: reason, message: message}:
		default:
		}
	}
}

func (m *mock) startRun(key, name string) *run {
	r := &run{startedAt: time.Now(), changed: make(chan struct{})}
	r.append(fmt.Sprintf("mock: container %s of %s started", name, key))
	if tickInterval <= 0 {
		return r
	}
	go func() {
		t := time.NewTicker(tickInterval)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-t.C:
			case <-m.closed:
				return
			}
			m.mu.Lock()
			if r.stopped {
				m.mu.Unlock()
				return
			}
			r.append(fmt.Sprintf("mock: %s tick %d", name, n))
			m.mu.Unlock()
		}
	}()
	return r
}

func (m *mock) createPod(pod Obj) error {
	key, err := podKey(pod)
	if err != nil {
		return err
	}
	spec := obj(pod, "spec")
	if len(spec) == 0 {
		return invalid("pod %s has no spec", key)
	}
	uid := str(pod, "metadata", "uid")
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		return status.Error(codes.Unavailable, "the provider is closing")
	default:
	}
	if old, ok := m.pods[key]; ok {
		if uid == "" || old.uid == uid {
			return nil // idempotent per UID
		}
		m.forget(key, old)
	}
	qos := str(pod, "status", "qosClass")
	delete(pod, "status")
	t := now()
	ip := m.ipOf(pod, uid)
	e := &entry{pod: pod, uid: uid, containers: map[string]*container{}, env: map[string][]string{}, stop: make(chan struct{})}
	var statuses []any
	for _, c := range list(spec, "containers") {
		c, _ := c.(map[string]any)
		name := str(c, "name")
		e.containers[name] = &container{current: m.startRun(key, name)}
		for _, v := range list(c, "env") {
			v, _ := v.(map[string]any)
			e.env[name] = append(e.env[name], str(v, "name")+"="+str(v, "value"))
		}
		statuses = append(statuses, Obj{
			"name": name, "image": str(c, "image"), "imageID": "",
			"containerID": "mock://" + uid + "/" + name,
			"ready":       true, "started": true, "restartCount": 0,
			"state": Obj{"running": Obj{"startedAt": t}},
		})
	}
	var conditions []any
	for _, c := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
		conditions = append(conditions, Obj{"type": c, "status": "True", "lastTransitionTime": t})
	}
	e.status = Obj{
		"phase": "Running", "conditions": conditions,
		"hostIP": m.hostIP, "hostIPs": []any{Obj{"ip": m.hostIP}},
		"podIP": ip, "podIPs": []any{Obj{"ip": ip}},
		"startTime": t, "containerStatuses": statuses,
	}
	if qos != "" {
		e.status["qosClass"] = qos
	}
	m.pods[key] = e
	m.emit(e)
	for name := range e.containers {
		m.event(e.view(), "Normal", "Started", "Started container "+name)
	}
	return nil
}

// forget drops a pod, stops its runs and frees its address. Called with m.mu held.
func (m *mock) forget(key string, e *entry) {
	delete(m.pods, key)
	delete(m.ips, e.uid)
	for _, c := range e.containers {
		c.current.halt()
	}
	close(e.stop)
}

func (m *mock) updatePod(pod Obj) error {
	key, err := podKey(pod)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pods[key]
	if !ok {
		return notFound("pod %s is not known to the go-mock provider", key)
	}
	delete(pod, "status")
	e.pod = pod
	changed := false
	for _, c := range list(obj(pod, "spec"), "containers") {
		c, _ := c.(map[string]any)
		for _, cs := range list(e.status, "containerStatuses") {
			cs, _ := cs.(map[string]any)
			if str(cs, "name") != str(c, "name") || str(cs, "image") == str(c, "image") {
				continue
			}
			// A new image restarts the container, as under a kubelet.
			t := now()
			cs["image"] = str(c, "image")
			cs["lastState"] = Obj{"terminated": Obj{"exitCode": 0, "reason": "Completed", "finishedAt": t}}
			cs["state"] = Obj{"running": Obj{"startedAt": t}}
			n, _ := cs["restartCount"].(int)
			cs["restartCount"] = n + 1
			if ctr := e.containers[str(c, "name")]; ctr != nil {
				ctr.current.halt()
				ctr.previous = ctr.current
				ctr.current = m.startRun(key, str(c, "name"))
			}
			changed = true
		}
	}
	if changed {
		m.emit(e)
	}
	return nil
}

func (m *mock) deletePod(pod Obj) error {
	key, err := podKey(pod)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pods[key]
	if !ok {
		// Released also when only preparePod ran.
		delete(m.ips, str(pod, "metadata", "uid"))
		return notFound("pod %s is not known to the go-mock provider", key)
	}
	t := now()
	for _, cs := range list(e.status, "containerStatuses") {
		cs, _ := cs.(map[string]any)
		started := str(cs, "state", "running", "startedAt")
		cs["state"] = Obj{"terminated": Obj{
			"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": t,
			"containerID": str(cs, "containerID"),
		}}
		cs["ready"] = false
		cs["started"] = false
	}
	for _, c := range list(e.status, "conditions") {
		c, _ := c.(map[string]any)
		if t := str(c, "type"); t == "Ready" || t == "ContainersReady" {
			c["status"] = "False"
			c["reason"] = "PodCompleted"
		}
	}
	e.status["phase"] = "Succeeded"
	m.emit(e)
	m.forget(key, e)
	return nil
}

func (m *mock) unary() map[string]UnaryFunc {
	p := m.p
	empty := func() Msg { return p.New("Empty") }
	podOf := func(in Msg) (Obj, error) { return decode(getBytes(in, "pod_json")) }
	return map[string]UnaryFunc{
		"Handshake": func(_ context.Context, in Msg) (Msg, error) {
			offered := getStrings(in, "versions")
			ok := false
			for _, v := range offered {
				ok = ok || v == version
			}
			if !ok {
				return nil, invalid("the agent offers protocol versions %v; go-mock speaks %s", offered, version)
			}
			m.mu.Lock()
			m.nodeName = getString(in, "node_name")
			m.mu.Unlock()
			out := p.New("HandshakeResponse")
			set(out, "version", version)
			set(out, "provider_name", "go-mock")
			for _, c := range capabilities {
				appendValue(out, "capabilities", c)
			}
			return out, nil
		},
		"CreatePod": func(_ context.Context, in Msg) (Msg, error) {
			pod, err := podOf(in)
			if err != nil {
				return nil, err
			}
			return empty(), m.createPod(pod)
		},
		"UpdatePod": func(_ context.Context, in Msg) (Msg, error) {
			pod, err := podOf(in)
			if err != nil {
				return nil, err
			}
			return empty(), m.updatePod(pod)
		},
		"DeletePod": func(_ context.Context, in Msg) (Msg, error) {
			pod, err := podOf(in)
			if err != nil {
				return nil, err
			}
			return empty(), m.deletePod(pod)
		},
		"GetPod": func(_ context.Context, in Msg) (Msg, error) {
			out := p.New("GetPodResponse")
			m.mu.Lock()
			defer m.mu.Unlock()
			if e, ok := m.pods[getString(in, "namespace")+"/"+getString(in, "name")]; ok {
				set(out, "found", true)
				set(out, "pod_json", encode(e.view()))
			}
			return out, nil
		},
		"GetPodStatus": func(_ context.Context, in Msg) (Msg, error) {
			out := p.New("GetPodStatusResponse")
			m.mu.Lock()
			defer m.mu.Unlock()
			if e, ok := m.pods[getString(in, "namespace")+"/"+getString(in, "name")]; ok {
				set(out, "found", true)
				set(out, "status_json", encode(e.status))
			}
			return out, nil
		},
		"ListPods": func(_ context.Context, _ Msg) (Msg, error) {
			out := p.New("ListPodsResponse")
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, e := range m.pods {
				appendValue(out, "pods_json", encode(e.view()))
			}
			return out, nil
		},
		"Ping": func(_ context.Context, _ Msg) (Msg, error) { return p.New("PingResponse"), nil },
		"ConfigureNode": func(_ context.Context, in Msg) (Msg, error) {
			node, err := decode(getBytes(in, "node_json"))
			if err != nil {
				return nil, err
			}
			st := obj(node, "status")
			resources := Obj{"cpu": capacityCPU, "memory": capacityMemory, "pods": capacityPods, "ephemeral-storage": "100Gi"}
			st["capacity"], st["allocatable"] = resources, resources
			info := obj(st, "nodeInfo")
			info["operatingSystem"], info["architecture"] = "linux", runtime.GOARCH
			st["nodeInfo"] = info
			node["status"] = st
			out := p.New("ConfigureNodeResponse")
			set(out, "node_json", encode(node))
			return out, nil
		},
		"GetStatsSummary": func(_ context.Context, _ Msg) (Msg, error) {
			out := p.New("StatsSummaryResponse")
			set(out, "summary_json", encode(m.summary()))
			return out, nil
		},
		"GetMetricsResource": func(_ context.Context, _ Msg) (Msg, error) {
			out := p.New("MetricsResourceResponse")
			set(out, "text", m.metricsResource())
			return out, nil
		},
		"PreparePod": func(_ context.Context, in Msg) (Msg, error) {
			pod, err := podOf(in)
			if err != nil {
				return nil, err
			}
			if _, err := podKey(pod); err != nil {
				return nil, err
			}
			m.mu.Lock()
			ip := m.ipOf(pod, str(pod, "metadata", "uid"))
			m.mu.Unlock()
			out := p.New("PreparePodResponse")
			appendValue(out, "pod_ips", ip)
			set(out, "host_ip", m.hostIP)
			return out, nil
		},
	}
}

func (m *mock) streams() map[string]StreamFunc {
	return map[string]StreamFunc{
		"WatchPods":        m.watchPods,
		"WatchNodeStatus":  m.watchNodeStatus,
		"WatchPodEvents":   m.watchPodEvents,
		"GetContainerLogs": m.logs,
		"Exec":             func(s grpc.ServerStream, _ protoreflect.MethodDescriptor) error { return m.session(s, true) },
		"Attach":           func(s grpc.ServerStream, _ protoreflect.MethodDescriptor) error { return m.session(s, false) },
		"PortForward":      m.portForward,
	}
}

func (m *mock) watchPods(s grpc.ServerStream, method protoreflect.MethodDescriptor) error {
	if err := s.RecvMsg(m.p.New(string(method.Input().Name()))); err != nil {
		return err
	}
	ch := make(chan []byte, 4096)
	m.mu.Lock()
	m.podSubs[ch] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.podSubs, ch)
		m.mu.Unlock()
	}()
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case b := <-ch:
			out := m.p.New("PodUpdate")
			set(out, "pod_json", b)
			if err := s.SendMsg(out); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		case <-m.closed:
			return nil
		}
	}
}

func (m *mock) watchPodEvents(s grpc.ServerStream, method protoreflect.MethodDescriptor) error {
	if err := s.RecvMsg(m.p.New(string(method.Input().Name()))); err != nil {
		return err
	}
	ch := make(chan podEvent, 1024)
	m.mu.Lock()
	m.evSubs[ch] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.evSubs, ch)
		m.mu.Unlock()
	}()
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case ev := <-ch:
			out := m.p.New("PodEventUpdate")
			set(out, "pod_json", encode(ev.pod))
			set(out, "type", ev.kind)
			set(out, "reason", ev.reason)
			set(out, "message", ev.message)
			if err := s.SendMsg(out); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		case <-m.closed:
			return nil
		}
	}
}

// watchNodeStatus never sends: the node's status does not change.
func (m *mock) watchNodeStatus(s grpc.ServerStream, method protoreflect.MethodDescriptor) error {
	if err := s.RecvMsg(m.p.New(string(method.Input().Name()))); err != nil {
		return err
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	select {
	case <-s.Context().Done():
	case <-m.closed:
	}
	return nil
}

// containerRun finds the run a request names.
func (m *mock) containerRun(ns, pod, name string, previous bool) (*entry, *run, error) {
	e, ok := m.pods[ns+"/"+pod]
	if !ok {
		return nil, nil, notFound("pod %q does not exist", pod)
	}
	c, ok := e.containers[name]
	if !ok {
		return nil, nil, notFound("container %q not found in pod %q", name, pod)
	}
	if previous {
		if c.previous == nil {
			return nil, nil, invalid("previous terminated container %q in pod %q not found", name, pod)
		}
		return e, c.previous, nil
	}
	return e, c.current, nil
}

func (m *mock) logs(s grpc.ServerStream, _ protoreflect.MethodDescriptor) error {
	in := m.p.New("LogsRequest")
	if err := s.RecvMsg(in); err != nil {
		return err
	}
	m.mu.Lock()
	_, r, err := m.containerRun(getString(in, "namespace"), getString(in, "pod"), getString(in, "container"), getBool(in, "previous"))
	m.mu.Unlock()
	if err != nil {
		return err
	}
	tail, hasTail := getOptInt(in, "tail_lines")
	limit, hasLimit := getOptInt(in, "limit_bytes")
	since := time.Time{}
	if secs, ok := getOptInt(in, "since_seconds"); ok {
		since = time.Now().Add(-time.Duration(secs) * time.Second)
	}
	if text, ok := getOptString(in, "since_time"); ok {
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return invalid("since_time %q is not RFC 3339", text)
		}
		if t.After(since) {
			since = t
		}
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	stamps := getBool(in, "timestamps")
	sent := int64(0)
	send := func(l logLine) (bool, error) {
		text := l.text + "\n"
		if stamps {
			text = l.at.Format("2006-01-02T15:04:05.000000000Z") + " " + text
		}
		b := []byte(text)
		if hasLimit && sent+int64(len(b)) > limit {
			b = b[:limit-sent]
		}
		sent += int64(len(b))
		out := m.p.New("LogChunk")
		set(out, "data", b)
		if err := s.SendMsg(out); err != nil {
			return false, err
		}
		return !hasLimit || sent < limit, nil
	}
	m.mu.Lock()
	var lines []logLine
	for _, l := range r.lines {
		if !l.at.Before(since) {
			lines = append(lines, l)
		}
	}
	if hasTail && int64(len(lines)) > tail {
		lines = lines[int64(len(lines))-tail:]
	}
	next := len(r.lines)
	m.mu.Unlock()
	for _, l := range lines {
		if more, err := send(l); err != nil || !more {
			return err
		}
	}
	if !getBool(in, "follow") {
		return nil
	}
	for {
		m.mu.Lock()
		fresh := append([]logLine(nil), r.lines[next:]...)
		next = len(r.lines)
		stopped, changed := r.stopped, r.changed
		m.mu.Unlock()
		for _, l := range fresh {
			if more, err := send(l); err != nil || !more {
				return err
			}
		}
		if stopped {
			return nil
		}
		select {
		case <-changed:
		case <-s.Context().Done():
			return nil
		case <-m.closed:
			return nil
		}
	}
}

// stdinBufferBytes is how much of a session's stdin may wait for the command, as in an
// operating system's pipe (larger: the sender is not held up by a command that reads in bursts).
const stdinBufferBytes = 1 << 20

// session serves Exec (exec true) and Attach.
func (m *mock) session(s grpc.ServerStream, exec bool) error {
	first := m.p.New("StreamRequest")
	if err := s.RecvMsg(first); err != nil {
		return err
	}
	kind, v := oneof(first)
	if kind != "start" {
		return invalid("the first message must be start")
	}
	start := v.Message()
	ns, podName, name := getString(start, "namespace"), getString(start, "pod"), getString(start, "container")
	m.mu.Lock()
	e, r, err := m.containerRun(ns, podName, name, false)
	var env []string
	var stop chan struct{}
	if err == nil {
		env, stop = e.env[name], e.stop
		if r.stopped {
			err = invalid("container %q in pod %q is not running", name, podName)
		}
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	command := getStrings(start, "command")
	if exec && len(command) == 0 {
		return invalid("the command is empty")
	}
	tty := getBool(start, "tty")

	var sendMu sync.Mutex
	sendOut := func(field string, b []byte) error {
		if len(b) == 0 {
			return nil
		}
		if tty && field == "stderr" {
			field = "stdout"
		}
		out := m.p.New("StreamResponse")
		set(out, field, append([]byte(nil), b...))
		sendMu.Lock()
		defer sendMu.Unlock()
		return s.SendMsg(out)
	}
	stdin := newPipe(stdinBufferBytes)
	// The command may end before its stdin does: the receiving goroutine must not wait for it.
	defer stdin.CloseRead()
	sizes := make(chan [2]uint64, 16)
	go func() {
		defer stdin.Close()
		for {
			msg := m.p.New("StreamRequest")
			if err := s.RecvMsg(msg); err != nil {
				return
			}
			switch kind, v := oneof(msg); kind {
			case "stdin":
				if _, err := stdin.Write(v.Bytes()); err != nil {
					return
				}
			case "stdin_close":
				_ = stdin.Close()
			case "resize":
				select {
				case sizes <- [2]uint64{getUint(v.Message(), "width"), getUint(v.Message(), "height")}:
				default:
				}
			}
		}
	}()
	if !exec {
		return m.attach(s.Context(), r, stdin, getBool(start, "stdin"), sendOut, stop)
	}
	sh := &shell{
		stdin:  stdin,
		stdout: func(b []byte) error { return sendOut("stdout", b) },
		stderr: func(b []byte) error { return sendOut("stderr", b) },
		env:    env, hostname: podName, sizes: sizes, ctx: s.Context(),
	}
	code := sh.run(command)
	out := m.p.New("StreamResponse")
	exit := m.p.New("Exit")
	set(exit, "code", int32(code))
	set(out, "exit", exit)
	sendMu.Lock()
	defer sendMu.Unlock()
	return s.SendMsg(out)
}

// attach echoes every line of stdin into the log; the session sees every line written meanwhile.
func (m *mock) attach(ctx context.Context, r *run, stdin io.Reader, hasStdin bool, send func(string, []byte) error, stop chan struct{}) error {
	m.mu.Lock()
	next := len(r.lines)
	m.mu.Unlock()
	forward := func() (bool, chan struct{}, error) {
		m.mu.Lock()
		fresh := append([]logLine(nil), r.lines[next:]...)
		next = len(r.lines)
		stopped, changed := r.stopped, r.changed
		m.mu.Unlock()
		for _, l := range fresh {
			if err := send("stdout", []byte(l.text+"\n")); err != nil {
				return true, changed, err
			}
		}
		return stopped, changed, nil
	}
	stdinDone := make(chan struct{})
	if hasStdin {
		go func() {
			defer close(stdinDone)
			buf := make([]byte, 32*1024)
			var pending []byte
			for {
				n, err := stdin.Read(buf)
				pending = append(pending, buf[:n]...)
				for {
					i := bytes.IndexByte(pending, '\n')
					if i < 0 {
						break
					}
					m.mu.Lock()
					if !r.stopped {
						r.append(string(pending[:i]))
					}
					m.mu.Unlock()
					pending = pending[i+1:]
				}
				if err != nil {
					return
				}
			}
		}()
	}
	for {
		stopped, changed, err := forward()
		if err != nil || stopped {
			return err
		}
		select {
		case <-changed:
		case <-stdinDone:
			_, _, err := forward()
			return err
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (m *mock) portForward(s grpc.ServerStream, _ protoreflect.MethodDescriptor) error {
	first := m.p.New("PortForwardRequest")
	if err := s.RecvMsg(first); err != nil {
		return err
	}
	kind, v := oneof(first)
	if kind != "start" {
		return invalid("the first message must be start")
	}
	start := v.Message()
	port := getUint(start, "port")
	m.mu.Lock()
	_, known := m.pods[getString(start, "namespace")+"/"+getString(start, "pod")]
	m.mu.Unlock()
	if !known {
		return notFound("pod %q does not exist", getString(start, "pod"))
	}
	if port < 1 || port > 65535 {
		return invalid("port %d is not between 1 and 65535", port)
	}
	// Every port is an echo server.
	for {
		msg := m.p.New("PortForwardRequest")
		if err := s.RecvMsg(msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch kind, v := oneof(msg); kind {
		case "data":
			out := m.p.New("PortForwardResponse")
			set(out, "data", v.Bytes())
			if err := s.SendMsg(out); err != nil {
				return err
			}
		case "close_write":
			return nil
		}
	}
}

// usage is the synthetic CPU and memory of the running containers, at one instant.
type usage struct {
	at       time.Time
	pods     []podUsage
	nodeName string
}

type podUsage struct {
	ns, name, uid string
	start         time.Time
	containers    []containerUsage
}

type containerUsage struct {
	name  string
	start time.Time
}

func (m *mock) usage() usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := usage{at: time.Now().UTC(), nodeName: m.nodeName}
	keys := make([]string, 0, len(m.pods))
	for k := range m.pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := m.pods[k]
		pu := podUsage{ns: str(e.pod, "metadata", "namespace"), name: str(e.pod, "metadata", "name"), uid: e.uid}
		names := make([]string, 0, len(e.containers))
		for n := range e.containers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			r := e.containers[n].current
			if r.stopped {
				continue
			}
			if pu.start.IsZero() || r.startedAt.Before(pu.start) {
				pu.start = r.startedAt
			}
			pu.containers = append(pu.containers, containerUsage{name: n, start: r.startedAt})
		}
		if len(pu.containers) > 0 {
			u.pods = append(u.pods, pu)
		}
	}
	return u
}

func cpuSeconds(start, at time.Time) float64 {
	return at.Sub(start).Seconds() * containerNanoCores / 1e9
}

func (m *mock) summary() Obj {
	u := m.usage()
	t := u.at.Format(time.RFC3339)
	cpu := func(n int, start time.Time) Obj {
		return Obj{"time": t, "usageNanoCores": n * containerNanoCores, "usageCoreNanoSeconds": int64(cpuSeconds(start, u.at) * float64(n) * 1e9)}
	}
	mem := func(n int) Obj {
		return Obj{"time": t, "usageBytes": n * containerMemory, "workingSetBytes": n * containerMemory, "rssBytes": n * containerMemory, "availableBytes": nodeMemory - n*containerMemory}
	}
	pods := []any{}
	total := 0
	for _, p := range u.pods {
		var cs []any
		for _, c := range p.containers {
			cs = append(cs, Obj{"name": c.name, "startTime": c.start.UTC().Format(time.RFC3339), "cpu": cpu(1, c.start), "memory": mem(1)})
		}
		n := len(p.containers)
		total += n
		pods = append(pods, Obj{
			"podRef":     Obj{"name": p.name, "namespace": p.ns, "uid": p.uid},
			"startTime":  p.start.UTC().Format(time.RFC3339),
			"containers": cs, "cpu": cpu(n, p.start), "memory": mem(n),
		})
	}
	return Obj{
		"node": Obj{
			"nodeName": u.nodeName, "startTime": m.started.UTC().Format(time.RFC3339),
			"cpu": cpu(max(total, 1), m.started), "memory": mem(max(total, 1)),
		},
		"pods": pods,
	}
}

func (m *mock) metricsResource() string {
	u := m.usage()
	ms := strconv.FormatInt(u.at.UnixMilli(), 10)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	var b strings.Builder
	line := func(name, labels, value string) {
		if labels != "" {
			labels = "{" + labels + "}"
		}
		fmt.Fprintf(&b, "%s%s %s %s\n", name, labels, value, ms)
	}
	typ := func(name, kind, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
	total := 0
	for _, p := range u.pods {
		total += len(p.containers)
	}
	typ("container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds")
	for _, p := range u.pods {
		for _, c := range p.containers {
			line("container_cpu_usage_seconds_total", fmt.Sprintf(`container=%q,namespace=%q,pod=%q`, c.name, p.ns, p.name), f(cpuSeconds(c.start, u.at)))
		}
	}
	typ("container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes")
	for _, p := range u.pods {
		for _, c := range p.containers {
			line("container_memory_working_set_bytes", fmt.Sprintf(`container=%q,namespace=%q,pod=%q`, c.name, p.ns, p.name), f(containerMemory))
		}
	}
	typ("container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds")
	for _, p := range u.pods {
		for _, c := range p.containers {
			line("container_start_time_seconds", fmt.Sprintf(`container=%q,namespace=%q,pod=%q`, c.name, p.ns, p.name), f(float64(c.start.UnixNano())/1e9))
		}
	}
	typ("node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds")
	line("node_cpu_usage_seconds_total", "", f(cpuSeconds(m.started, u.at)*float64(max(total, 1))))
	typ("node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes")
	line("node_memory_working_set_bytes", "", f(float64(max(total, 1)*containerMemory)))
	typ("pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds")
	for _, p := range u.pods {
		line("pod_cpu_usage_seconds_total", fmt.Sprintf(`namespace=%q,pod=%q`, p.ns, p.name), f(cpuSeconds(p.start, u.at)*float64(len(p.containers))))
	}
	typ("pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes")
	for _, p := range u.pods {
		line("pod_memory_working_set_bytes", fmt.Sprintf(`namespace=%q,pod=%q`, p.ns, p.name), f(float64(len(p.containers)*containerMemory)))
	}
	fmt.Fprintf(&b, "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n")
	return b.String()
}
