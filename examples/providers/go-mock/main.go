// Command go-mock is a provider for virtual-kubelet written in Go: it serves the provider
// protocol (proto/virtualkubelet/provider/v1alpha1/provider.proto) and behaves like the
// TypeScript mock provider: pods go Running at once, containers write a log, exec runs a few
// built-in commands, attach echoes stdin into the log, every pod port echoes, and stats report
// synthetic usage.
//
// It has no generated code: the .proto (embedded at build time) is compiled at start with
// protocompile, messages are dynamicpb messages, and the service is registered by hand.
//
// It listens where VK_PROVIDER_ADDRESS says (unix:///path.sock or host:port). For TCP it wants
// mutual TLS: VK_PROVIDER_TLS_CERT, VK_PROVIDER_TLS_KEY and VK_PROVIDER_TLS_CA (the CA of the
// agent's client certificate).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bufbuild/protocompile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

//go:embed provider.proto
var protoSource string

// The protocol version this provider speaks.
const version = "v1alpha1"

// Msg is any message of the protocol.
type Msg = *dynamicpb.Message

// Proto holds the compiled protocol.
type Proto struct {
	file    protoreflect.FileDescriptor
	service protoreflect.ServiceDescriptor
}

func compileProto(ctx context.Context) (*Proto, error) {
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{"provider.proto": protoSource}),
		}),
	}
	files, err := compiler.Compile(ctx, "provider.proto")
	if err != nil {
		return nil, err
	}
	fd := files[0]
	svc := fd.Services().ByName("Provider")
	if svc == nil {
		return nil, fmt.Errorf("provider.proto has no service Provider")
	}
	return &Proto{file: fd, service: svc}, nil
}

// New makes an empty message of the named type.
func (p *Proto) New(name string) Msg {
	d := p.file.Messages().ByName(protoreflect.Name(name))
	if d == nil {
		panic("no message " + name)
	}
	return dynamicpb.NewMessage(d)
}

func fieldOf(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	f := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if f == nil {
		panic(fmt.Sprintf("%s has no field %s", m.Descriptor().FullName(), name))
	}
	return f
}

func getString(m protoreflect.Message, name string) string { return m.Get(fieldOf(m, name)).String() }
func getBytes(m protoreflect.Message, name string) []byte  { return m.Get(fieldOf(m, name)).Bytes() }
func getBool(m protoreflect.Message, name string) bool     { return m.Get(fieldOf(m, name)).Bool() }
func getUint(m protoreflect.Message, name string) uint64   { return m.Get(fieldOf(m, name)).Uint() }

// getOptInt reads an `optional int64` field: its value and whether it is set.
func getOptInt(m protoreflect.Message, name string) (int64, bool) {
	f := fieldOf(m, name)
	if !m.Has(f) {
		return 0, false
	}
	return m.Get(f).Int(), true
}

func getOptString(m protoreflect.Message, name string) (string, bool) {
	f := fieldOf(m, name)
	if !m.Has(f) {
		return "", false
	}
	return m.Get(f).String(), true
}

func getStrings(m protoreflect.Message, name string) []string {
	l := m.Get(fieldOf(m, name)).List()
	out := make([]string, l.Len())
	for i := range out {
		out[i] = l.Get(i).String()
	}
	return out
}

func set(m protoreflect.Message, name string, v any) {
	if sub, ok := v.(protoreflect.Message); ok {
		m.Set(fieldOf(m, name), protoreflect.ValueOfMessage(sub))
		return
	}
	m.Set(fieldOf(m, name), protoreflect.ValueOf(v))
}

func appendValue(m protoreflect.Message, name string, v any) {
	m.Mutable(fieldOf(m, name)).List().Append(protoreflect.ValueOf(v))
}

// oneof names the member of oneof `kind` that is set, and the member's value.
func oneof(m protoreflect.Message) (string, protoreflect.Value) {
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("kind"))
	if f == nil {
		return "", protoreflect.Value{}
	}
	return string(f.Name()), m.Get(f)
}

// UnaryFunc answers one request.
type UnaryFunc func(ctx context.Context, in Msg) (Msg, error)

// StreamFunc serves one streaming call.
type StreamFunc func(stream grpc.ServerStream, method protoreflect.MethodDescriptor) error

// register adds the service to s, each method answered by the function of the same name.
func (p *Proto) register(s *grpc.Server, unary map[string]UnaryFunc, streams map[string]StreamFunc) {
	desc := grpc.ServiceDesc{
		ServiceName: string(p.service.FullName()),
		HandlerType: (*any)(nil),
		Metadata:    "provider.proto",
	}
	methods := p.service.Methods()
	for i := 0; i < methods.Len(); i++ {
		m := methods.Get(i)
		name := string(m.Name())
		if !m.IsStreamingClient() && !m.IsStreamingServer() {
			fn, ok := unary[name]
			if !ok {
				continue // answered UNIMPLEMENTED by grpc
			}
			desc.Methods = append(desc.Methods, grpc.MethodDesc{
				MethodName: name,
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					in := dynamicpb.NewMessage(m.Input())
					if err := dec(in); err != nil {
						return nil, err
					}
					return fn(ctx, in)
				},
			})
			continue
		}
		fn, ok := streams[name]
		if !ok {
			continue
		}
		desc.Streams = append(desc.Streams, grpc.StreamDesc{
			StreamName:    name,
			ServerStreams: m.IsStreamingServer(),
			ClientStreams: m.IsStreamingClient(),
			Handler: func(_ any, stream grpc.ServerStream) error {
				return fn(stream, m)
			},
		})
	}
	s.RegisterService(&desc, struct{}{})
}

func listen(address string) (net.Listener, []grpc.ServerOption, error) {
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		_ = os.Remove(path)
		l, err := net.Listen("unix", path)
		return l, nil, err
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("VK_PROVIDER_TLS_CERT"), os.Getenv("VK_PROVIDER_TLS_KEY"))
	if err != nil {
		return nil, nil, fmt.Errorf("TCP needs mutual TLS (VK_PROVIDER_TLS_CERT, _KEY, _CA): %w", err)
	}
	caPEM, err := os.ReadFile(os.Getenv("VK_PROVIDER_TLS_CA"))
	if err != nil {
		return nil, nil, fmt.Errorf("VK_PROVIDER_TLS_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("VK_PROVIDER_TLS_CA holds no certificate")
	}
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	l, err := net.Listen("tcp", address)
	return l, []grpc.ServerOption{grpc.Creds(creds)}, err
}

// The HTTP/2 flow-control window of each stream and of the connection. grpc-go's default
// starts at 64 KiB and grows it from its bandwidth estimate, which stays small on a unix socket
// (its round trip is short): a stream of exec stdin then waits for a window update every
// message. The agent opens the same windows on its side.
const flowControlWindowBytes = 8 << 20

// streamingOptions are the server's settings for bulk streams (exec, attach, port-forward,
// logs): large flow-control windows, and read and write buffers that hold a whole message of
// 64 KiB so that each is one system call.
var streamingOptions = []grpc.ServerOption{
	grpc.InitialWindowSize(flowControlWindowBytes),
	grpc.InitialConnWindowSize(flowControlWindowBytes),
	grpc.WriteBufferSize(256 << 10),
	grpc.ReadBufferSize(256 << 10),
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-mock: ")
	address := os.Getenv("VK_PROVIDER_ADDRESS")
	if address == "" {
		log.Fatal("VK_PROVIDER_ADDRESS is not set (unix:///path.sock or host:port)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	proto, err := compileProto(ctx)
	if err != nil {
		log.Fatalf("compiling provider.proto: %v", err)
	}
	l, opts, err := listen(address)
	if err != nil {
		log.Fatalf("listening on %s: %v", address, err)
	}
	server := grpc.NewServer(append(opts, streamingOptions...)...)
	mock := newMock(proto)
	proto.register(server, mock.unary(), mock.streams())
	go func() {
		<-ctx.Done()
		mock.close()
		server.Stop()
	}()
	log.Printf("serving protocol %s on %s", version, address)
	if err := server.Serve(l); err != nil && ctx.Err() == nil {
		log.Fatalf("serve: %v", err)
	}
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		_ = os.Remove(path)
	}
}
